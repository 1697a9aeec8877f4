"""Built-in plugins: genre."""
