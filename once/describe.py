"""What `once plugins show KIND NAME` prints: where a part lives, what it does, and every option it takes."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from once.kinds import BY_NAME
from once.registry import Part


@dataclass(frozen=True)
class OptionInfo:
    name: str
    type: str
    default: str  # "(required)" when the recipe must give it
    constraints: str
    description: str


@dataclass(frozen=True)
class PartInfo:
    part: Part
    module: str
    location: str  # file:line of the implementation
    doc: str
    options: list[OptionInfo]
    snippet: str  # a recipe fragment that uses the part with its defaults


def describe(part: Part) -> PartInfo:
    implementation = part.load()
    try:
        file = inspect.getsourcefile(implementation) or "?"
        line = inspect.getsourcelines(implementation)[1]
        location = f"{_short(Path(file))}:{line}"
    except (OSError, TypeError):  # built in C, or defined where inspect cannot see the source
        location = "?"
    options = [_option(name, field) for name, field in part.options.model_fields.items()]
    return PartInfo(
        part=part,
        module=getattr(implementation, "__module__", "?"),
        location=location,
        doc=_doc(implementation),
        options=options,
        snippet=_snippet(part, _defaults(part.options)),
    )


def _option(name: str, field: Any) -> OptionInfo:
    default = "(required)" if field.is_required() else repr(_default(field))
    constraints = ", ".join(filter(None, (_constraint(item) for item in field.metadata)))
    annotation = getattr(field.annotation, "__name__", None) if isinstance(field.annotation, type) else None
    text = annotation or str(field.annotation).replace("typing.", "").replace("pathlib.", "")
    return OptionInfo(name, text, default, constraints, field.description or "")


def _doc(implementation: Any) -> str:
    """The implementation's own docstring (not one inherited from torch.nn.Module), else its module's."""
    own = vars(implementation).get("__doc__") if isinstance(implementation, type) else implementation.__doc__
    module = inspect.getmodule(implementation)
    text = own or (module.__doc__ if module else None)
    return inspect.cleandoc(text) if text else "(no docstring)"


def _constraint(item: Any) -> str:
    """`ge 1` and the like, from pydantic's annotated-types metadata (slotted dataclasses); validators are not shown."""
    if type(item).__module__ != "annotated_types":
        return ""
    if dataclasses.is_dataclass(item):
        return ", ".join(
            f"{f.name} {getattr(item, f.name)}" for f in dataclasses.fields(item) if getattr(item, f.name) is not None
        )
    return str(item)


def _default(field: Any) -> Any:
    """A field's default as plain data (nested models and paths included), as a recipe would write it."""
    return to_jsonable_python(field.get_default(call_default_factory=True))


def _defaults(options: type[BaseModel]) -> dict[str, Any]:
    """Option -> default, with "..." for the options a recipe must give."""
    return {name: "..." if field.is_required() else _default(field) for name, field in options.model_fields.items()}


def _snippet(part: Part, defaults: dict[str, Any]) -> str:
    kind = BY_NAME[part.kind]
    text = kind.snippet(part.name)
    if not defaults:
        return text
    indent = " " * (2 * kind.depth)
    body = yaml.safe_dump(defaults, sort_keys=False, default_flow_style=False).splitlines()
    return text + "".join(f"{indent}{line}\n" for line in body)


def _short(path: Path) -> str:
    """The path relative to the working folder when it is inside it, else as it is."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
