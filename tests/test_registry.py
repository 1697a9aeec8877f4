import re

import pytest
import yaml
from pydantic import BaseModel
from rich.console import Console

from once import hookspecs
from once.api import Options
from once.cli import make_app
from once.cli import run as cli_run
from once.errors import PluginError
from once.hookspecs import hookimpl
from once.kinds import KINDS
from once.recipe import SLOTS, PluginChoice, Recipe
from once.registry import load_registry

BUILT_INS = {
    ("dataset", "mind"),
    ("dataset", "demo"),
    ("tokenizer", "words"),
    *(("item_encoder", name) for name in ("nrms", "naml", "lstur", "random", "popularity", "overlap")),
    *(("user_encoder", name) for name in ("nrms", "naml", "lstur", "mean", "max", "ones")),
    ("predictor", "dot"),
}


def test_built_ins_come_from_the_entry_point_group(registry):
    found = {(p.kind, p.name): p for p in registry.parts()}
    assert set(found) >= BUILT_INS
    for key in BUILT_INS:
        assert found[key].distribution == "once"


def test_without_entry_points_nothing_is_registered():
    assert load_registry(entry_points=False).parts() == []


def test_unknown_name_lists_available_and_closest(registry):
    with pytest.raises(PluginError) as error:
        registry.get("item_encoder", "nrm")
    assert "unknown item encoder 'nrm'" in error.value.message
    assert "Did you mean 'nrms'?" in error.value.hint
    assert "Available: bert, dkn, docvec, fastformer, llama, lstur, naml, npa, nrms, overlap" in error.value.hint


class NoOptions(Options):
    """No options."""


def make_plugin(name: str, hook: str, implementation):
    """A plugin object whose one hook implementation is `implementation`, under the hook name `hook`."""
    return type(name, (), {"__name__": name, hook: staticmethod(hookimpl(specname=hook)(implementation))})()


def register_nrms_again(register):
    register("nrms", object, NoOptions)


def test_two_plugins_registering_one_name_is_an_error_naming_both():
    with pytest.raises(PluginError) as error:
        load_registry(plugins=[make_plugin("clash", "register_item_encoders", register_nrms_again)])
    assert "two plugins register the item encoder 'nrms'" in error.value.message
    assert "once 0.1" in error.value.message  # the built-in's distribution
    assert "clash" in error.value.message


def test_hook_matching_no_spec_is_rejected_at_start_up():
    with pytest.raises(PluginError) as error:
        load_registry(
            entry_points=False, plugins=[make_plugin("misspelt", "register_item_encoder", register_nrms_again)]
        )
    assert "misspelt" in error.value.message
    assert "register_item_encoders" in error.value.hint


def test_options_must_be_a_pydantic_model():
    with pytest.raises(PluginError, match="without a pydantic options model"):
        load_registry(
            entry_points=False,
            plugins=[make_plugin("no-options", "register_predictors", lambda register: register("bad", object, dict))],
        )


def test_options_that_accept_unknown_keys_are_refused():
    class Lenient(BaseModel):  # pydantic's default ignores unknown keys: a recipe typo would pass silently
        dim: int = 8

    with pytest.raises(PluginError, match="accept unknown keys") as error:
        load_registry(
            entry_points=False,
            plugins=[make_plugin("lenient", "register_predictors", lambda register: register("x", object, Lenient))],
        )
    assert "once.api.Options" in error.value.hint


def test_every_kind_has_a_hook_and_a_table():
    registry = load_registry()
    manager_hooks = {name for name in dir(hookspecs) if name.startswith("register_")}
    assert {kind.hook for kind in KINDS} | {"register_commands"} == manager_hooks
    assert {part.kind for part in registry.parts()} <= {kind.name for kind in KINDS}
    for key in SLOTS:  # a kind that a recipe names has its field there (a default decides if it is optional)
        model = Recipe
        for part in key:
            model = model.model_fields[part].annotation
        assert model is PluginChoice, key


def test_plugins_can_add_commands(capsys):
    def register_commands(cli):
        @cli.command()
        def hello(name: str):
            """Say hello."""
            print(f"hello {name}")

    registry = load_registry(plugins=[make_plugin("greeter", "register_commands", register_commands)])
    assert cli_run(["hello", "world"], registry) == 0
    assert capsys.readouterr().out == "hello world\n"


def test_commands_get_the_registry_and_console_like_the_built_ins():
    seen = {}

    def register_commands(cli, registry, console):
        seen.update(registry=registry, console=console)

    registry = load_registry(plugins=[make_plugin("peeker", "register_commands", register_commands)])
    console = Console()
    app = make_app(registry, console)
    assert seen == {"registry": registry, "console": console}
    # the built-ins come through the same hook, first and in order, and a second app over the registry works
    assert [group.name for group in app.registered_groups] == ["recipe", "plugins", "genre"]
    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert commands[:4] == ["train", "eval", "cache", "data"]
    assert len(make_app(registry, console).registered_commands) == len(app.registered_commands)


def test_plugins_show_prints_location_docstring_options_and_a_snippet(capsys):
    assert cli_run(["plugins", "show", "item_encoder", "nrms"]) == 0
    out = capsys.readouterr().out
    assert "module once_plugins.news.nrms" in out
    assert re.search(r"\(plugins/news/nrms\.py:\d+\)", out)
    assert "NRMS (Wu et al., EMNLP 2019)" in out
    assert re.search(r"word_dim\s*│\s*int\s*│\s*300\s*│\s*ge 1", out)
    snippet = out[out.index("recipe snippet:") :].split("\n", 1)[1]
    assert yaml.safe_load(snippet)["model"]["item"] == {
        "name": "nrms",
        "field": "title",
        "word_dim": 300,
        "heads": 16,
        "head_dim": 16,
        "query_dim": 200,
        "dropout": 0.2,
    }


def test_plugins_lists_one_kind_and_names_a_wrong_kind(capsys):
    assert cli_run(["plugins", "--kind", "predictor"]) == 0
    out = capsys.readouterr().out
    assert "dot" in out and "nrms" not in out
    assert cli_run(["plugins", "--kind", "encoder"]) == 2
    assert "unknown kind of part 'encoder'" in capsys.readouterr().err


def test_a_reference_is_imported_when_the_part_is_built():
    part = load_registry().get("item_encoder", "nrms")
    assert part.implementation == "once_plugins.news.nrms:NrmsItemEncoder"
    assert part.load().__name__ == "NrmsItemEncoder"


def test_a_malformed_or_broken_reference_names_the_part():
    def bad_syntax(register):
        register("odd", "no colon here", load_registry().get("predictor", "dot").options)

    with pytest.raises(PluginError, match="registers predictor 'odd' as 'no colon here', which is not a reference"):
        load_registry(entry_points=False, plugins=[make_plugin("odd", "register_predictors", bad_syntax)])
    for malformed in ("a..b:C", "a.b:C.", "a.b:"):

        def dotted(register, reference=malformed):
            register("odd", reference, load_registry().get("predictor", "dot").options)

        with pytest.raises(PluginError, match="which is not a reference"):
            load_registry(entry_points=False, plugins=[make_plugin("odd", "register_predictors", dotted)])

    def missing(register):
        register("ghost", "once_plugins.nowhere:Ghost", load_registry().get("predictor", "dot").options)

    registry = load_registry(entry_points=False, plugins=[make_plugin("ghost", "register_predictors", missing)])
    with pytest.raises(PluginError, match=r"the predictor 'ghost' from plugin 'ghost' .* cannot be loaded"):
        registry.get("predictor", "ghost").load()
