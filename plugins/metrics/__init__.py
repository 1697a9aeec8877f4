"""Built-in plugins: evaluation metrics."""
