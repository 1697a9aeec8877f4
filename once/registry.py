"""The plugin manager: loads plugins from the `once` entry-point group and looks parts up by kind and name."""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pluggy
from pydantic import BaseModel

from once import hookspecs
from once.errors import OnceError, PluginError, closest
from once.kinds import KINDS
from once.protocols import Register

ENTRY_POINT_GROUP = "once"
DISABLE_VARIABLE = "ONCE_DISABLE_PLUGINS"  # comma-separated entry-point or distribution names, or "third-party"
OWN_DISTRIBUTION = "once"
NAME = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"  # dotted Python names
REFERENCE = re.compile(f"{NAME}:{NAME}")  # "package.module:Attribute", imported when built



@dataclass(frozen=True)
class Part:
    """One registered implementation, with the plugin and distribution that provide it."""

    kind: str
    name: str
    implementation: Callable[..., Any] | str  # or "module:attribute", imported by load()
    options: type[BaseModel]
    plugin: str
    distribution: str | None
    version: str | None

    def load(self) -> Callable[..., Any]:
        """The implementation; a "module:attribute" reference is imported now, when the part is first built."""
        if not isinstance(self.implementation, str):
            return self.implementation
        module, _, attribute = self.implementation.partition(":")
        try:
            target: Any = importlib.import_module(module)
            for name in attribute.split("."):
                target = getattr(target, name)
        except OnceError:  # the module explains itself (e.g. which extra installs its dependency)
            raise
        except Exception as error:  # a missing optional dependency, a renamed class: name the part and its package
            raise PluginError(
                f"the {self.kind.replace('_', ' ')} '{self.name}' from {self.provider} cannot be loaded "
                f"({self.implementation}): {error}",
                hint=f"Reinstall {self.distribution}." if self.distribution else None,
            ) from error
        return target

    @property
    def provider(self) -> str:
        """The distribution (with version) that ships this part, or the in-process plugin name."""
        if self.distribution:
            return f"{self.distribution} {self.version}"
        return f"plugin '{self.plugin}' (registered in-process)"


class Registry:
    """Every registered part, by kind and name; built by `load_registry`, never mutated afterwards."""

    def __init__(
        self,
        manager: pluggy.PluginManager,
        parts: dict[str, dict[str, Part]],
        disabled: list[tuple[str, str | None]] | None = None,
    ) -> None:
        self._manager = manager
        self._parts = parts
        self.disabled = disabled or []  # (entry point, distribution) skipped through ONCE_DISABLE_PLUGINS

    def get(self, kind: str, name: str) -> Part:
        """The part of this kind and name, or an error listing what is available and the closest match."""
        if kind not in self._parts:
            raise PluginError(f"unknown kind of part '{kind}'", hint=f"Kinds: {', '.join(self._parts)}.")
        available = self._parts[kind]
        if name in available:
            return available[name]
        guess = closest(name, list(available))
        hint = f"Did you mean '{guess}'? " if guess else ""
        label = kind.replace("_", " ")
        if self.disabled:
            hint += f"{DISABLE_VARIABLE} disables: {', '.join(name for name, _ in self.disabled)}. "
        raise PluginError(
            f"unknown {label} '{name}'",
            hint=f"{hint}Available: {', '.join(sorted(available)) or 'none'}. "
            "Run `once plugins` to see every registered part.",
        )

    def parts(self) -> list[Part]:
        return [part for kind in self._parts for part in sorted(self._parts[kind].values(), key=lambda p: p.name)]

    def distributions(self) -> dict[str, str]:
        """Distribution name -> version of every plugin package that registered something."""
        return {p.distribution: p.version for p in self.parts() if p.distribution and p.version}

    def add_commands(self, cli: Any, console: Any, built_in: Sequence[object] = ()) -> None:
        """Add commands to `cli` through the register_commands hook: first those of `built_in` (modules whose
        implementation is marked tryfirst, ONCE's own commands, kept in this order), then every plugin's."""
        for module in reversed(built_in):  # pluggy calls the implementation registered last first
            if not self._manager.is_registered(module):
                self._manager.register(module, name=module.__name__)
        self._manager.hook.register_commands(cli=cli, registry=self, console=console)


def load_registry(*, entry_points: bool = True, plugins: Iterable[object] = (), disable: str | None = None) -> Registry:
    """Load the `once` entry points (built-ins included) and any plugin objects given, then collect their parts.

    `disable` (default: the ONCE_DISABLE_PLUGINS environment variable) names entry points or distributions to
    skip without importing them, comma-separated; "third-party" skips every plugin not shipped with ONCE. For
    debugging a broken or misbehaving plugin package.
    """
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    origins: dict[str, tuple[str | None, str | None]] = {}
    skip = {name.strip() for name in (os.environ.get(DISABLE_VARIABLE, "") if disable is None else disable).split(",")}
    disabled = []
    if entry_points:
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            distribution = entry_point.dist.metadata["Name"] if entry_point.dist else None
            third_party = distribution != OWN_DISTRIBUTION
            if entry_point.name in skip or distribution in skip or ("third-party" in skip and third_party):
                disabled.append((entry_point.name, distribution))
                continue
            _register_entry_point(manager, entry_point, origins)
    for plugin in plugins:
        name = manager.register(plugin, name=getattr(plugin, "__name__", None))
        origins[name] = (None, None)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        name = manager.get_name(error.plugin) or repr(error.plugin)
        distribution = origins.get(name, (None, None))[0] or "registered in-process"
        raise PluginError(
            f"plugin '{name}' ({distribution}) implements a hook that ONCE does not define: {error}",
            hint=f"Hooks are: {', '.join(sorted(h for h in dir(hookspecs) if h.startswith('register_')))}.",
        ) from None
    parts: dict[str, dict[str, Part]] = {kind.name: {} for kind in KINDS}
    for kind in KINDS:
        for impl in getattr(manager.hook, kind.hook).get_hookimpls():
            distribution, version = origins.get(impl.plugin_name, (None, None))
            register = _collector(parts[kind.name], kind.name, impl.plugin_name, distribution, version)
            impl.function(**{arg: register for arg in impl.argnames})
    return Registry(manager, parts, disabled)


def _register_entry_point(
    manager: pluggy.PluginManager,
    entry_point: importlib.metadata.EntryPoint,
    origins: dict[str, tuple[str | None, str | None]],
) -> None:
    distribution = entry_point.dist.metadata["Name"] if entry_point.dist else None
    version = entry_point.dist.version if entry_point.dist else None
    existing = manager.get_plugin(entry_point.name)
    try:
        plugin = entry_point.load()
    except Exception as error:  # a broken plugin must name itself, not crash start-up with a bare traceback
        if distribution == OWN_DISTRIBUTION and isinstance(error, ModuleNotFoundError):
            raise PluginError(
                f"ONCE's built-in plugin '{entry_point.name}' ({entry_point.value}) cannot be imported: {error}",
                hint="The checkout is not (or no longer) installed as it is laid out: run `pip install -e .` "
                "in it (with your venv active).",
            ) from error
        raise PluginError(
            f"plugin '{entry_point.name}' ({entry_point.value}) from {distribution} {version} failed to load: {error}",
            hint=f"Reinstall or uninstall {distribution}.",
        ) from error
    if existing is plugin:  # the same distribution seen twice on sys.path
        return
    if existing is not None:
        first = origins[entry_point.name][0]
        raise PluginError(
            f"two distributions declare the plugin entry point '{entry_point.name}': {first} and {distribution}",
            hint="Uninstall one of them.",
        )
    manager.register(plugin, name=entry_point.name)
    origins[entry_point.name] = (distribution, version)


def _collector(
    table: dict[str, Part], kind: str, plugin: str, distribution: str | None, version: str | None
) -> Register:
    def register(name: str, implementation: Callable[[Any, Any], Any] | str, options: type[BaseModel]) -> None:
        part = Part(kind, name, implementation, options, plugin, distribution, version)
        if isinstance(implementation, str) and not REFERENCE.fullmatch(implementation):
            raise PluginError(
                f"{part.provider} registers {kind} '{name}' as '{implementation}', which is not a reference",
                hint="Give the implementation itself or 'package.module:Attribute'.",
            )
        if name in table:
            raise PluginError(
                f"two plugins register the {kind.replace('_', ' ')} '{name}': {table[name].provider} "
                f"and {part.provider}",
                hint="Uninstall one of them, or ask a plugin author to rename theirs.",
            )
        if not (isinstance(options, type) and issubclass(options, BaseModel)):
            raise PluginError(f"{part.provider} registers {kind} '{name}' without a pydantic options model")
        if options.model_config.get("extra") != "forbid":
            raise PluginError(
                f"{part.provider} registers {kind} '{name}' with options {options.__name__} that accept unknown "
                "keys, so a recipe typo would pass silently",
                hint="Derive the options from once.api.Options (extra='forbid').",
            )
        table[name] = part

    return register
