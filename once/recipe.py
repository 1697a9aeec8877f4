"""Recipes: YAML files that name registered plugins and their options, validated by pydantic.

A recipe never executes code. Paths inside it resolve relative to the recipe file (or from `~` and
environment variables), so a recipe written on one machine runs on another.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import string
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from once.errors import PluginError, RecipeError, closest
from once.files import read_text
from once.kinds import KINDS
from once.registry import Part, Registry, load_registry

DEMO_RECIPE = "demo"


def _resolve_path(value: Any, info: ValidationInfo) -> Path:
    if not isinstance(value, str | Path):
        raise ValueError("expected a path")
    expanded = os.path.expandvars(os.path.expanduser(str(value)))
    if "$" in expanded:
        raise ValueError(f"'{value}' names an environment variable that is not set")
    path = Path(expanded)
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir")
        path = (Path(base) if base else Path.cwd()) / path
    return Path(os.path.normpath(path))


RecipePath = Annotated[Path, BeforeValidator(_resolve_path)]
"""A path option: relative to the recipe's folder, `~` and `$VARS` expanded."""


class Strict(BaseModel):
    """A recipe section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class PluginChoice(BaseModel):
    """`name` of a registered plugin plus that plugin's own options (validated by its options model)."""

    model_config = ConfigDict(extra="allow")
    name: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _check_template(template: str) -> str:
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is not None and (not field.isidentifier() or spec or conversion):
            raise ValueError(f"'{{{field}}}' is not a plain field name: write {{title}}, {{category}}, ...")
    return template


Template = Annotated[str, AfterValidator(_check_template)]


def template_fields(template: str) -> list[str]:
    """The item fields a prompt template names, in order."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


class ItemsSection(Strict):
    text: dict[str, PositiveInt] = Field(default_factory=lambda: {"title": 30}, description="text field -> max tokens")
    categories: list[str] = Field(default_factory=lambda: ["category", "subcategory"])
    templates: dict[str, Template] = Field(
        default_factory=dict,
        description="new text fields written from other fields, e.g. prompt: 'news article: {title} ({category})'",
    )
    entities: list[str] = Field(
        default_factory=list,
        description="text fields whose linked entities become the feature '<field>_entities', aligned with the "
        "field's tokens (DKN; MIND's title and abstract entities)",
    )
    vectors: list[str] = Field(
        default_factory=list,
        description="the dataset's pretrained item vector fields kept as (items, dim) features (EB-NeRD's document "
        "embeddings, read by item encoder docvec)",
    )

    @model_validator(mode="after")
    def _entities_name_text_fields(self) -> ItemsSection:
        for field in self.entities:
            if field not in self.text:
                raise ValueError(
                    f"items.entities names '{field}', which items.text does not tokenize: entities are aligned with "
                    f"a text field's tokens (items.text: {', '.join(self.text)})"
                )
        return self


class BackendSection(Strict):
    """`genre.backend` in a recipe. The API key itself never goes in a recipe: name a variable or a key file."""

    name: Literal["openai", "transformers"] = "openai"
    model: str = Field("gpt-3.5-turbo", description="model name sent to the endpoint")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint; default https://api.openai.com/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    api_key_file: RecipePath | None = Field(None, description="file whose first line is the API key")
    path: RecipePath | None = Field(None, description="transformers backend: folder of a causal LM checkpoint")
    gguf_file: str | None = Field(None, description="transformers backend: a GGUF file inside `path`")
    max_in_flight: int = Field(8, ge=1, description="requests awaiting an answer at once")
    requests_per_minute: int | None = Field(500, ge=1)
    tokens_per_minute: int | None = Field(200_000, ge=1, description="prompt + max answer tokens per minute")
    timeout: float = Field(60, gt=0, description="seconds before a request is abandoned and retried")
    max_retries: int = Field(6, ge=0, description="further attempts after a transient failure")
    backoff: float = Field(1.0, gt=0, description="first retry delay in seconds; doubles each attempt, jittered")
    max_backoff: float = Field(60, gt=0)
    max_tokens: int = Field(256, ge=1, description="longest answer")
    temperature: float = Field(0.0, ge=0, le=2)
    price_prompt: float | None = Field(None, ge=0, description="price per million prompt tokens (dry-run cost)")
    price_completion: float | None = Field(None, ge=0, description="price per million answer tokens")


class GenreSection(Strict):
    """`genre`: how `once genre` asks an LLM, and where its answers go (not part of the training fingerprint)."""

    backend: BackendSection = BackendSection()
    out: RecipePath = Field(Path("genre"), description="folder of the <scheme>.jsonl answer files")
    schemes: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="scheme key -> augmenter options; `name` defaults to the key"
    )


class AugmentSection(Strict):
    """`augment`: GENRE answers merged into the data before tokenizing."""

    summaries: RecipePath | None = Field(None, description="summarize answers: a new item text field")
    summary_field: str = Field("summary", description="name of that field (use it in items.text or a template)")
    generated: list[RecipePath] = Field(
        default_factory=list, description="generate answers: synthetic items appended to cold users' histories"
    )
    cold_history: int = Field(5, ge=1, description="users with at most this many history items are cold")
    profiles: RecipePath | None = Field(None, description="profile answers: user-side tokens fused into user vectors")
    profile_tokens: int = Field(12, ge=1, description="tokens kept of each profile")


class ModelSection(Strict):
    item: PluginChoice
    user: PluginChoice
    predictor: PluginChoice = PluginChoice(name="dot")


Metric = Literal["auc", "mrr", "ndcg@5", "ndcg@10"]


class TrainSection(Strict):
    epochs: int = Field(5, ge=0, description="0 evaluates without training (the training-free baselines)")
    task: Literal["matching", "ranking"] = Field(
        "matching",
        description="matching: each click against `negatives` unclicked candidates of its impression, softmax"
        " cross-entropy; ranking: every candidate row alone, binary cross-entropy (click-through prediction)",
    )
    batch_size: int = Field(
        64, ge=1, description="clicks per batch (matching), or candidate rows, of whole impressions (ranking)"
    )
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    negatives: int = Field(
        4, ge=1, description="unclicked candidates per click, from the same impression (matching task)"
    )
    unclicked_rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="share of unclicked rows each ranking epoch keeps (down-sampling); probabilities are"
        " calibrated back by adding log(rate) to the logits",
    )
    max_history: int = Field(50, ge=1, description="most recent history items kept")
    accumulate: int = Field(1, ge=1, description="batches per optimizer step")
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float | None = Field(None, gt=0)
    patience: int | None = Field(2, ge=1, description="epochs without dev improvement before stopping")
    metric: Metric = "auc"
    max_steps: int | None = Field(None, ge=1, description="stop each epoch after this many optimizer steps")
    prefetch: int = Field(
        0,
        ge=0,
        description="batches built ahead in a background thread (0: on demand; on 2 CPU cores it slowed"
        " NRMS training, see docs/benchmarks.md)",
    )

    @model_validator(mode="after")
    def _task_keys(self) -> TrainSection:
        if self.task == "matching" and self.unclicked_rate != 1:
            raise ValueError(
                "train.unclicked_rate down-samples the rows of train.task: ranking, but train.task is matching"
                " (which draws train.negatives per click instead); set train.task: ranking or drop"
                " train.unclicked_rate"
            )
        return self


class EvalSection(Strict):
    batch_size: int = Field(256, ge=1)
    metrics: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["auc", "mrr", "ndcg"],
        description="metrics of the test split and `once compare`: a name or {name: ..., options} each"
        " (`once plugins --kind metric`); dev epochs always report auc, mrr, ndcg@5 and ndcg@10",
    )
    k: list[int] = Field(default_factory=lambda: [5, 10], min_length=1, description="top-k cut-offs")
    history_bins: list[int] = Field(
        default_factory=lambda: [5, 10, 20],
        min_length=1,
        description="user groups by clicked items before an impression: at most 5, 6 to 10, 11 to 20, more",
    )

    @field_validator("k", "history_bins")
    @classmethod
    def _increasing(cls, values: list[int]) -> list[int]:
        if values[0] < 1 or any(b <= a for a, b in zip(values, values[1:], strict=False)):
            raise ValueError(f"expected increasing whole numbers from 1 (got {values})")
        return values


class Recipe(Strict):
    description: str = ""
    requires: list[str] = Field(default_factory=list, description="plugin distributions, pip-style specifiers")
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast to bfloat16 (training and scoring)")
    compile: bool = Field(False, description="torch.compile the item and user encoders")
    threads: int | None = Field(
        None, ge=1, description="CPU threads per process; default: the cores free at start (see README)"
    )
    deterministic: bool = Field(False, description="bit-identical repeated runs on CPU (one thread)")
    dataset: PluginChoice
    tokenizer: PluginChoice
    items: ItemsSection = ItemsSection()
    model: ModelSection
    train: TrainSection = TrainSection()
    eval: EvalSection = EvalSection()
    augment: AugmentSection = AugmentSection()
    genre: GenreSection = GenreSection()
    track: list[str | dict[str, Any]] = Field(
        default_factory=list,
        description="experiment trackers (`once plugins --kind tracker`): a name or {name: ..., options} each;"
        " `once train --track NAME` adds one (not part of the fingerprint)",
    )


# recipe key -> kind of plugin it names
SLOTS: dict[tuple[str, ...], str] = {kind.recipe_key: kind.name for kind in KINDS if kind.recipe_key}
NOT_FINGERPRINTED = ("description", "requires", "genre", "threads", "deterministic", "track")  # how, not what
MAX_RECIPE_BYTES = 1_000_000


@dataclass(frozen=True)
class ResolvedRecipe:
    """A validated recipe: every plugin looked up, every option filled in."""

    recipe: Recipe
    parts: dict[tuple[str, ...], Part]
    options: dict[tuple[str, ...], BaseModel]
    data: dict[str, Any]  # the fully resolved recipe as plain data (what `once recipe show` prints)
    source: str  # where it came from, for messages
    name: str  # short name for run directories
    metrics: tuple[tuple[Part, BaseModel], ...] = ()  # eval.metrics: each metric part with its validated options
    trackers: tuple[tuple[Part, BaseModel], ...] = ()  # track: each tracker part with its validated options

    @property
    def fingerprint(self) -> str:
        content = {k: v for k, v in self.data.items() if k not in NOT_FINGERPRINTED}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def part(self, *slot: str) -> Part:
        return self.parts[slot]

    def build(self, *slot: str, context: Any = None) -> Any:
        """Instantiate the plugin in `slot` with its validated options."""
        return self.parts[slot].load()(self.options[slot], context)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False)


def builtin_recipes() -> dict[str, Any]:
    """Name -> resource of every recipe shipped in `recipes/`."""
    folder = importlib.resources.files("once.recipes")
    return {f.name.removesuffix(".yaml"): f for f in folder.iterdir() if f.name.endswith(".yaml")}


def read_recipe_text(source: str | Path) -> tuple[str, str, Path | None]:
    """(text, label, folder) of a recipe file, or of a built-in recipe given by name."""
    path = Path(source)
    if path.is_file():
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise RecipeError(
                f"the recipe file is larger than {MAX_RECIPE_BYTES // 1_000_000} MB: not a recipe", where=str(path)
            )
        return read_text(path), str(path), path.resolve().parent
    builtins = builtin_recipes()
    if str(source) in builtins:
        return builtins[str(source)].read_text(encoding="utf8"), f"built-in recipe '{source}'", None
    guess = closest(str(source), list(builtins))
    raise RecipeError(
        f"no recipe file '{source}' and no built-in recipe of that name",
        hint=(f"Did you mean '{guess}'? " if guess else "") + f"Built-in recipes: {', '.join(sorted(builtins))}.",
    )


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """`key.sub=value` strings -> (key path, YAML-parsed value)."""
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise RecipeError(
                f"override '{item}' is not of the form key.sub=value", hint="Example: --set train.lr=1e-4"
            )
        try:
            parsed.append((key.split("."), yaml.safe_load(value) if value else ""))
        except yaml.YAMLError:
            parsed.append((key.split("."), value))
    return parsed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for keys, value in parse_overrides(overrides):
        node = data
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise RecipeError(f"cannot set '{'.'.join(keys)}': '{'.'.join(keys[: depth + 1])}' is not a section")
            node = child
        node[keys[-1]] = value
    return data


def load_recipe(
    source: str | Path = DEMO_RECIPE, registry: Registry | None = None, overrides: list[str] | None = None
) -> ResolvedRecipe:
    """Read, override, validate and resolve a recipe (a file path or a built-in recipe's name)."""
    text, label, folder = read_recipe_text(source)
    name = Path(source).stem if folder else str(source)
    return resolve_recipe(text, registry, overrides or [], label=label, base_dir=folder, name=name)


def resolve_recipe(
    text: str,
    registry: Registry | None,
    overrides: list[str],
    *,
    label: str = "recipe",
    base_dir: Path | None = None,
    name: str = "recipe",
) -> ResolvedRecipe:
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(f"the recipe is larger than {MAX_RECIPE_BYTES // 1_000_000} MB: not a recipe", where=label)
    try:
        for event in yaml.parse(text):  # aliases can expand a small file into a huge or endless structure
            if isinstance(event, yaml.AliasEvent):
                raise RecipeError(
                    "YAML aliases (*name) are not allowed in recipes",
                    where=f"{label}:{event.start_mark.line + 1}",
                    hint="Write the value out where it is needed.",
                )
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{label}:{mark.line + 1}" if mark else label
        raise RecipeError(f"not valid YAML: {getattr(error, 'problem', error)}", where=where) from None
    if not isinstance(data, dict):
        raise RecipeError("a recipe must be a mapping of sections (dataset, tokenizer, model, train, ...)", where=label)
    data = apply_overrides(data, overrides)
    lines = _key_lines(text)
    for item, (keys, _) in zip(overrides, parse_overrides(overrides), strict=True):  # blamed on their --set
        for known in [loc for loc in lines if loc[: len(keys)] == tuple(keys)]:
            del lines[known]
        lines[tuple(keys)] = f"--set {item}"
    context = {"base_dir": base_dir}
    try:
        recipe = Recipe.model_validate(data, context=context)
    except ValidationError as error:
        raise validation_error(error, Recipe, (), label, lines) from None
    _check_requires(recipe.requires, label)
    registry = registry or load_registry()
    parts, options = {}, {}
    resolved = recipe.model_dump(mode="json")
    for slot, kind in SLOTS.items():
        choice = _get(recipe, slot)
        try:
            part = registry.get(kind, choice.name)
        except PluginError as error:
            where = _where(label, _line_of(lines, (*slot, "name")))
            raise RecipeError(f"{'.'.join(slot)}.name: {error.message}", where=where, hint=error.hint) from None
        try:
            validated = part.options.model_validate(choice.options(), context=context)
        except ValidationError as error:
            raise validation_error(error, part.options, slot, label, lines) from None
        parts[slot], options[slot] = part, validated
        node = resolved
        for key in slot[:-1]:
            node = node[key]
        node[slot[-1]] = {"name": choice.name, **validated.model_dump(mode="json")}
    for key in recipe.genre.schemes:  # checked now, so `once recipe validate` catches a bad scheme too
        scheme_options(recipe.genre, key, registry, label, lines)
    metrics = listed_parts("metric", ("eval", "metrics"), recipe.eval.metrics, registry, label, lines)
    resolved["eval"]["metrics"] = [{"name": part.name, **opts.model_dump(mode="json")} for part, opts in metrics]
    trackers = listed_parts("tracker", ("track",), recipe.track, registry, label, lines)
    resolved["track"] = [{"name": part.name, **opts.model_dump(mode="json")} for part, opts in trackers]
    return ResolvedRecipe(recipe, parts, options, resolved, label, name, metrics, trackers)


def with_trackers(resolved: ResolvedRecipe, names: list[str], registry: Registry) -> ResolvedRecipe:
    """The recipe with trackers added (`once train --track NAME`, repeatable; a resumed run too: trackers are not
    part of the fingerprint)."""
    if not names:
        return resolved
    added = listed_parts("tracker", ("--track",), list(names), registry, resolved.source)
    entries = [*resolved.recipe.track, *names]
    data = {
        **resolved.data,
        "track": [*resolved.data["track"], *({"name": p.name, **o.model_dump(mode="json")} for p, o in added)],
    }
    return replace(
        resolved,
        recipe=resolved.recipe.model_copy(update={"track": entries}),
        data=data,
        trackers=(*resolved.trackers, *added),
    )


def listed_parts(
    kind: str,
    key: tuple[str, ...],
    entries: list[str | dict[str, Any]],
    registry: Registry,
    label: str = "recipe",
    lines: dict | None = None,
) -> tuple[tuple[Part, BaseModel], ...]:
    """The parts a recipe list names (`eval.metrics`, `track`: each a name, or a mapping with `name` and
    options), looked up and validated; an error names the entry."""
    where = _where(label, _line_of(lines or {}, key))
    listed = []
    for index, entry in enumerate(entries):
        at = f"{'.'.join(key)}[{index}]"
        choice = {"name": entry} if isinstance(entry, str) else dict(entry)
        if not isinstance(choice.get("name"), str):
            raise RecipeError(f"{at}: each entry needs a name", where=where)
        name = choice.pop("name")
        try:
            part = registry.get(kind, name)
        except PluginError as error:
            raise RecipeError(f"{at}: {error.message}", where=where, hint=error.hint) from None
        try:
            listed.append((part, part.options.model_validate(choice)))
        except ValidationError as error:
            raise validation_error(error, part.options, (*key, str(index)), label, lines) from None
    return tuple(listed)


def scheme_options(
    genre: GenreSection,
    key: str,
    registry: Registry,
    label: str = "recipe",
    lines: dict[tuple, int | str] | None = None,
) -> tuple[Part, BaseModel]:
    """The augmenter that `genre.schemes.KEY` names (`name` defaults to the key) and its validated options."""
    choice = dict(genre.schemes.get(key) or {})
    name = choice.pop("name", key)
    try:
        part = registry.get("augmenter", name)
    except PluginError as error:
        where = _where(label, _line_of(lines or {}, ("genre", "schemes", key)))
        raise RecipeError(f"genre.schemes.{key}: {error.message}", where=where, hint=error.hint) from None
    try:
        return part, part.options.model_validate(choice)
    except ValidationError as error:
        raise validation_error(error, part.options, ("genre", "schemes", key), label, lines) from None


def _get(recipe: Recipe, slot: tuple[str, ...]) -> PluginChoice:
    node: Any = recipe
    for key in slot:
        node = getattr(node, key)
    return node


def _check_requires(requires: list[str], label: str) -> None:
    missing = []
    for text in requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise RecipeError(f"requires: '{text}' is not a valid requirement ({error})", where=label) from None
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{requirement} (not installed)")
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{requirement} (installed: {installed})")
    if missing:
        install = " ".join(f"'{m.split(' (')[0]}'" for m in missing)
        raise RecipeError(
            f"this recipe needs plugin packages that are missing: {'; '.join(missing)}",
            where=label,
            hint=f"Install them: pip install {install}",
        )


def validation_error(
    error: ValidationError,
    model: type[BaseModel],
    prefix: tuple[str, ...],
    label: str,
    lines: dict[tuple, int | str] | None = None,
) -> RecipeError:
    """One readable error for every problem pydantic found: key path, line, and the closest known key."""
    lines = lines or {}
    problems = []
    for item in error.errors():
        loc = prefix + tuple(str(part) for part in item["loc"])
        key = ".".join(loc)
        line = _line_of(lines, loc)
        where = f"{line}, " if isinstance(line, str) else f"line {line}, " if line else ""
        if item["type"] == "extra_forbidden":
            known = _fields_at(model, tuple(str(p) for p in item["loc"][:-1]))
            guess = closest(loc[-1], known)
            suggestion = f"; did you mean '{guess}'?" if guess else f"; known keys: {', '.join(known)}"
            problems.append(f"{where}{key}: unknown key{suggestion}")
        elif item["type"] == "missing":
            problems.append(f"{where}{key}: required key is missing")
        else:
            problems.append(f"{where}{key}: {item['msg']} (got {item.get('input')!r})")
    return RecipeError("invalid recipe\n  " + "\n  ".join(problems), where=label)


def _fields_at(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    for key in loc:
        field = model.model_fields.get(key)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [name for name in model.model_fields if name != "name" or model is PluginChoice]


def _where(label: str, line: int | str | None) -> str:
    """`label:line`, or the `--set` argument that gave the key, or the label alone."""
    if isinstance(line, str):
        return f"{label} ({line})"
    return f"{label}:{line}" if line else label


def _line_of(lines: dict[tuple, int | str], loc: tuple[str, ...]) -> int | str | None:
    """The line of the deepest known key above `loc`, or the `--set KEY=VALUE` argument that set it."""
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def _key_lines(text: str) -> dict[tuple, int | str]:
    """Key path -> 1-based line number of every mapping key in a YAML text."""
    lines: dict[tuple, int | str] = {}

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)

    with contextlib.suppress(yaml.YAMLError):  # syntax errors are reported by the parser
        walk(yaml.compose(text), ())
    return lines
