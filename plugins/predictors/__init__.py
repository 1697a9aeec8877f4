"""Built-in plugins: predictors."""
