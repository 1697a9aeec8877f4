"""The import graph keeps its shape: plugins use only the public API, and the core never imports a plugin."""

import pytest
from import_graph import graph

API = "once.api"
# the only core modules a plugin may import besides once.api (the API's own building blocks stay internal)
PLUGIN_ALLOWED = {API}


def plugin_violations(table: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} imports {target}"
        for module, targets in table.items()
        if module.startswith("once_plugins")
        for target in sorted(targets)
        if target.startswith("once.") and target not in PLUGIN_ALLOWED or target == "once"
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
        ("once.train", "once_plugins.datasets.demo", core_violations),  # the core depending on a plugin
    ],
)
def test_a_violation_is_caught(module, target, check):
    table = graph()
    table[module] = table[module] | {target}
    assert check(table) == [f"{module} imports {target}"]
