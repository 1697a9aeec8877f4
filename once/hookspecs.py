"""The hooks a plugin implements: each receives a `register(name, implementation, options)` callback.

`implementation` is a callable `(options, context) -> part`, `options` the pydantic model of the
part's recipe options. See `once.registry` for what each kind of part must provide.
"""

import pluggy

hookspec = pluggy.HookspecMarker("once")
hookimpl = pluggy.HookimplMarker("once")


@hookspec
def register_datasets(register):
    """Register datasets: readers that turn files into items and impressions."""


@hookspec
def register_tokenizers(register):
    """Register tokenizers: turn item text fields into token ids."""


@hookspec
def register_item_encoders(register):
    """Register item encoders: item tokens -> item vector."""


@hookspec
def register_user_encoders(register):
    """Register user encoders: vectors of the clicked history -> user vector."""


@hookspec
def register_predictors(register):
    """Register click predictors: user vector and candidate vectors -> scores."""


@hookspec
def register_augmenters(register):
    """Register LLM augmenters: prompt schemes that enrich items or users with generated text."""


@hookspec
def register_commands(cli):
    """Add commands to the `once` command line (a typer.Typer)."""
