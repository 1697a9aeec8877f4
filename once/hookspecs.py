"""The hooks a plugin implements, one `register_*` per kind of `once.kinds.KINDS`, plus `register_commands`.

Each `register_*` hook receives a `register(name, implementation, options)` callback (`once.protocols.Register`);
`implementation(options, context)` builds the part, `options` is its `once.api.Options` model. The contract of
each kind is in `once.protocols` and docs/plugins.md.
"""

from __future__ import annotations

from typing import Any

import pluggy
import typer
from rich.console import Console

from once.kinds import KINDS
from once.protocols import Register

hookspec = pluggy.HookspecMarker("once")
hookimpl = pluggy.HookimplMarker("once")


def _register_spec(hook: str, summary: str) -> Any:
    def spec(register: Register) -> None: ...

    spec.__name__ = spec.__qualname__ = hook
    spec.__doc__ = f"Register parts: {summary}."
    return hookspec(spec)


globals().update({kind.hook: _register_spec(kind.hook, kind.summary) for kind in KINDS})


@hookspec
def register_commands(cli: typer.Typer, registry: Any, console: Console) -> None:
    """Add commands to the `once` command line.

    `registry` is the loaded `once.registry.Registry` (for commands that look parts up), `console` the console
    commands print to. An implementation takes the arguments it needs, e.g. `register_commands(cli)`. ONCE's own
    commands (`once/commands/*.py`) are implementations of this hook too, added before any plugin's.
    """
