"""The import graph keeps its shape: plugins use only the public API, the core never imports a plugin, and the
core's layers import one way only (each from the layers below it, never from beside or above)."""

import pytest
from import_graph import graph, modules

API = "once.api"
# the only core modules a plugin may import besides once.api (the API's own building blocks stay internal)
PLUGIN_ALLOWED = {API}


# lowest first; a module may import its own group and the groups of lower layers. Groups in one layer are
# siblings that never import each other: GENRE feeds the data layer only through once.data.prepare.Augmentation,
# which once.assembly hands over. Every core module is placed here (a new one must choose its layer).
LAYERS: list[dict[str, set[str]]] = [
    {
        "primitives": {
            "once", "once.errors", "once.files", "once.progress", "once.distributed", "once.execution", "once.metrics",
            "once.data.tables", "once.kinds", "once.protocols", "once.hookspecs", "once.nn",
        },
    },
    {"configuration": {"once.registry", "once.recipe", "once.describe"}},
    {
        "data": {"once.data", "once.data.appending", "once.data.prepare", "once.data.sampling", "once.data.export"},
        "genre": {
            "once.genre", "once.genre.store", "once.genre.backends", "once.genre.runner", "once.genre.merge",
            "once.genre.command", "once.genre.paper_logs",
        },
    },
    {"model": {"once.model", "once.states", "once.checkpoint"}},
    {
        "running": {
            "once.assembly", "once.evaluate", "once.measure", "once.train", "once.runs", "once.compare", "once.trained",
            "once.significance", "once.seeds", "once.tracking", "once.sweep",
        },
    },
    {"serving": {"once.server", "once.server.*"}},
    {"commands": {"once.cli", "once.__main__", "once.genre.cli", "once.commands", "once.commands.*"}},
    {"api": {"once.api"}},
]


def place(module: str) -> tuple[int, str] | None:
    """(layer index, group) of a core module, or None when LAYERS does not place it."""
    for level, groups in enumerate(LAYERS):
        for group, members in groups.items():
            if module in members or any(m.endswith(".*") and module.startswith(m[:-1]) for m in members):
                return level, group
    return None


def layer_violations(table: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in table.items():
        if module.split(".")[0] != "once":
            continue
        level, group = place(module)
        for target in sorted(targets):
            if target.split(".")[0] != "once":
                continue
            target_level, target_group = place(target)
            if target_level > level or (target_level == level and target_group != group):
                found.append(f"{module} ({group}) imports {target} ({target_group})")
    return found


def cycles(table: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among project modules (function-level imports included), each as the path that closes it."""
    found, done, path = [], set(), []

    def visit(module: str) -> None:
        if module in path:
            found.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        path.append(module)
        for target in sorted(table.get(module, ())):
            if target != module:
                visit(target)
        path.pop()
        done.add(module)

    for module in sorted(table):
        visit(module)
    return found


def test_every_core_module_has_a_layer():
    assert [m for m in modules() if m.split(".")[0] == "once" and place(m) is None] == []


def test_the_core_layers_import_one_way():
    assert layer_violations(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def package(module: str) -> str:
    """The built-in plugin package a module belongs to, e.g. once_plugins.news."""
    return ".".join(module.split(".")[:2])


def plugin_violations(table: dict[str, set[str]]) -> list[str]:
    """A plugin module importing the core past once.api, or another plugin package (their own is fine)."""
    return [
        f"{module} imports {target}"
        for module, targets in table.items()
        if module.startswith("once_plugins.")
        for target in sorted(targets)
        if (target.startswith("once.") and target not in PLUGIN_ALLOWED or target == "once")
        or (target.startswith("once_plugins.") and package(target) != package(module))
    ]


def core_violations(table: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} imports {target}"
        for module, targets in table.items()
        if module.split(".")[0] == "once"
        for target in sorted(targets)
        if target.split(".")[0] == "once_plugins"
    ]


def test_plugins_import_only_the_public_api():
    assert plugin_violations(graph()) == []


def test_the_core_never_imports_a_plugin():
    assert core_violations(graph()) == []


@pytest.mark.parametrize(
    ("module", "target", "check"),
    [
        ("once_plugins.news.nrms", "once.nn", plugin_violations),  # a plugin reaching past the API
        ("once_plugins.lm.tiny", "once_plugins.datasets.demo", plugin_violations),  # into another package
        ("once.train", "once_plugins.datasets.demo", core_violations),  # the core depending on a plugin
    ],
)
def test_a_violation_is_caught(module, target, check):
    table = graph()
    table[module] = table[module] | {target}
    assert check(table) == [f"{module} imports {target}"]


@pytest.mark.parametrize(
    ("module", "target", "group", "target_group"),
    [
        ("once.data.prepare", "once.genre.merge", "data", "genre"),  # a sibling: the old data -> GENRE import
        ("once.recipe", "once.data.prepare", "configuration", "data"),  # upward
        ("once.model", "once.train", "model", "running"),
    ],
)
def test_a_layer_violation_is_caught(module, target, group, target_group):
    table = graph()
    table[module] = table[module] | {target}
    assert layer_violations(table) == [f"{module} ({group}) imports {target} ({target_group})"]


def test_a_cycle_is_caught():
    table = graph()
    table["once.files"] = table["once.files"] | {"once.checkpoint"}
    assert cycles(table) == [["once.files", "once.checkpoint", "once.files"]]
