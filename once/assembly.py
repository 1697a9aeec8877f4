"""From a resolved recipe to a ready model: the one path that train, cache, eval, recommend, export and serve take.

start_world -> set_execution (threads, deterministic mode) -> prepare_once (load_data: the tokenized data with
GENRE's answers merged) -> pick_device -> assemble (seed, build the parts, move to the device, attach the
hidden-state cache).
"""

from __future__ import annotations

import os
from typing import Literal

import torch

from once.data.prepare import PreparedData, prepare
from once.distributed import World, init_world
from once.errors import OnceError
from once.execution import Execution, configure
from once.genre.merge import GenreAnswers
from once.model import Recommender, build_recommender
from once.recipe import ResolvedRecipe
from once.states import attach_cache


def start_world(resolved: ResolvedRecipe) -> World:
    """This process's place under torchrun (a single process when not launched by it)."""
    return init_world(use_cuda=resolved.recipe.device in ("auto", "cuda") and torch.cuda.is_available())


def set_execution(resolved: ResolvedRecipe) -> Execution:
    """This process's CPU threads and deterministic mode, from the recipe (threads shared by torchrun's processes
    on this machine)."""
    recipe = resolved.recipe
    return configure(recipe.threads, recipe.deterministic, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def load_data(resolved: ResolvedRecipe) -> PreparedData:
    """The recipe's tokenized data, with the GENRE answers its `augment` section names merged in."""
    return prepare(resolved, GenreAnswers(resolved.recipe.augment))


def prepare_once(resolved: ResolvedRecipe, world: World) -> PreparedData:
    """The tokenized data; under torchrun rank 0 tokenizes first and the other ranks then read its files."""
    if world.main:
        data = load_data(resolved)
    world.barrier()
    return data if world.main else load_data(resolved)


def pick_device(name: str, world: World | None = None) -> torch.device:
    """The recipe's device; under torchrun with GPUs, this rank's GPU."""
    world = world or World()
    if world.distributed and name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", world.local_rank)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OnceError("the recipe asks for device: cuda, but no CUDA GPU is available", hint="Use device: auto.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise OnceError("the recipe asks for device: mps, but Apple's MPS is not available", hint="Use device: auto.")
    return torch.device(name)


def assemble(
    resolved: ResolvedRecipe,
    data: PreparedData,
    device: torch.device,
    *,
    cache: Literal["build", "existing", "none"],
    world: World | None = None,
) -> Recommender:
    """The recipe's model for this data on `device`, its parameters drawn from the recipe's seed.

    `cache`: "build" reads the item encoder's hidden-state cache and builds it when missing (training),
    "existing" reads it only if it is there (a trained run), "none" leaves the frozen layers running
    (`once cache`, which writes the cache itself).
    """
    torch.manual_seed(resolved.recipe.seed)
    model = build_recommender(resolved, data).to(device)
    if cache != "none":
        batch_size = resolved.recipe.eval.batch_size
        attach_cache(model, data, build=cache == "build", batch_size=batch_size, device=device, world=world)
    return model
