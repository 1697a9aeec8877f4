"""The one table of part kinds. The hooks, the registry, the recipe resolver, `once plugins` and docs/plugins.md
all read it: a new kind of part is one `Kind(...)` line here (and its protocol in `once.protocols`). A kind that a
recipe names in one slot also gets that slot's field in `once.recipe.Recipe`, where its default says whether a
recipe must name it (tests/test_registry.py fails until it does)."""

from __future__ import annotations

from dataclasses import dataclass

from once import protocols


@dataclass(frozen=True)
class Kind:
    """One kind of part: its name, the hook that registers it, where a recipe names it, and its contract."""

    name: str  # as in `once plugins show KIND NAME`, e.g. "item_encoder"
    hook: str  # the pluggy hook plugins implement, e.g. "register_item_encoders"
    recipe_key: tuple[str, ...] | None  # the recipe section naming one part of this kind; None: named elsewhere
    protocol: type  # what the implementation returns (once.protocols)
    summary: str  # one line, for the hook's docstring and `once plugins`
    elsewhere: str = ""  # recipe_key None: the fragment naming a part, "{name}" filled in
    elsewhere_depth: int = 3  # how deep a part's options sit in that fragment

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    @property
    def depth(self) -> int:
        """How deep a part's options sit in its recipe fragment."""
        return len(self.recipe_key) if self.recipe_key else self.elsewhere_depth

    def snippet(self, name: str) -> str:
        """A recipe fragment that uses the part `name` of this kind."""
        if self.recipe_key is None:
            return self.elsewhere.format(name=name)
        lines, indent = [], ""
        for key in self.recipe_key:
            lines.append(f"{indent}{key}:")
            indent += "  "
        return "\n".join(lines) + f"\n{indent}name: {name}\n"


KINDS: tuple[Kind, ...] = (
    Kind("dataset", "register_datasets", ("dataset",), protocols.Dataset, "files -> items and impressions"),
    Kind("tokenizer", "register_tokenizers", ("tokenizer",), protocols.Tokenizer, "item text fields -> token ids"),
    Kind("item_encoder", "register_item_encoders", ("model", "item"), protocols.ItemEncoder, "item -> vector"),
    Kind("user_encoder", "register_user_encoders", ("model", "user"), protocols.UserEncoder, "history -> vector"),
    Kind("predictor", "register_predictors", ("model", "predictor"), protocols.Predictor, "user, candidates -> scores"),
    Kind(
        "augmenter", "register_augmenters", None, protocols.Augmenter, "GENRE prompt schemes (genre.schemes)",
        "genre:\n  schemes:\n    {name}:\n      name: {name}\n",
    ),
    Kind(
        "metric", "register_metrics", None, protocols.Metric, "scored impressions -> a number (eval.metrics)",
        "eval:\n  metrics:\n    - name: {name}\n",
    ),
    Kind(
        "tracker", "register_trackers", None, protocols.Tracker, "training progress -> an experiment tracker (track)",
        "track:\n  - name: {name}\n", 2,
    ),
)
BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}
