"""The built-in commands of `once`, one module each; each module implements the `register_commands` hook that
plugins implement, and `once.cli` adds them first, in this order."""

from once.commands import cache, compare, data, evaluate, export, plugins, recipe, recommend, runs, serve, sweep, train
from once.genre import cli as genre

BUILT_IN = (train, evaluate, cache, data, recipe, plugins, runs, recommend, export, serve, sweep, compare, genre)
