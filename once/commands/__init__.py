"""The built-in commands of `once`, one module each; each module's `register_commands(cli, registry, console)`
has the signature of the `register_commands` hook that plugins implement."""

from once.commands import cache, compare, data, evaluate, export, plugins, recipe, recommend, runs, train

BUILT_IN = (train, evaluate, cache, data, recipe, plugins, runs, recommend, export, compare)
