"""ONCE's built-in plugins, registered through the `once` entry-point group like any third-party package."""
