"""User encoders that work under any item encoder: sequence models over the clicked items."""
