"""`once cache`: store the hidden states of an LM item encoder's frozen layers (DIRE)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console

from once.commands.common import Overrides
from once.hookspecs import hookimpl
from once.recipe import load_recipe
from once.registry import Registry


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console
    @cli.command()
    def cache(
        recipe: Annotated[str, typer.Argument(help="Recipe file or built-in recipe name.")],
        set_: Overrides = None,
        shard_items: Annotated[
            int | None, typer.Option(min=1, help="Items per shard file, for a new cache (default 4096).")
        ] = None,
    ):
        """Run the frozen layers of the recipe's LM item encoder over every item and store their hidden states."""

        from once.assembly import assemble, pick_device, prepare_once, set_execution, start_world
        from once.states import SHARD_ITEMS, build_cache

        resolved = load_recipe(recipe, registry, set_)
        world = start_world(resolved)
        set_execution(resolved)
        data = prepare_once(resolved, world)
        device = pick_device(resolved.recipe.device, world)
        model = assemble(resolved, data, device, cache="none", world=world)
        started = time.perf_counter()
        states = build_cache(
            model,
            data,
            batch_size=resolved.recipe.eval.batch_size,
            device=device,
            shard_items=shard_items or SHARD_ITEMS,
            world=world,
        )
        size = sum(f.stat().st_size for f in states.folder.iterdir()) / 2**20
        if world.main:  # under torchrun, rank 0 reports for all
            out.print(
                f"cached hidden states of {data.num_items} items ({len(states.shards)} shards, {size:.1f} MB) "
                f"in {states.folder} ({time.perf_counter() - started:.1f} s)"
            )
