"""`python -m once` runs the command line, like the `once` script."""

from once.cli import main

main()
