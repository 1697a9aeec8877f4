"""Built-in plugins: lm."""
