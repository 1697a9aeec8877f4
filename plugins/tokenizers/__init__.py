"""Built-in plugins: tokenizers."""
