"""Built-in plugins: news."""
