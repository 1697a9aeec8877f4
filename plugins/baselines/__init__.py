"""Built-in plugins: baselines."""
