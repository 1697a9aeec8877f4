"""Built-in recipes, shipped as package data (`once recipe ls`)."""
