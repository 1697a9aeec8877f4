"""A third-party plugin package, installed for real, registers through the entry point and trains from a recipe."""

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

from once.cli import run as cli
from once.errors import RecipeError
from once.recipe import load_recipe
from once.registry import load_registry
from once.train import train

PACKAGE = Path(__file__).parent / "plugin_package"


def test_before_installing_the_recipe_says_what_to_install(registry):
    """Runs first, before the module's fixture installs the package."""
    with pytest.raises(RecipeError, match=r"pip install 'once-toy-plugin>=0.1'"):
        load_recipe("demo", registry, ["model.user.name=average", "requires=[once-toy-plugin>=0.1]"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`pip install` the package into a private folder and put it on sys.path for this module only."""
    source = shutil.copytree(PACKAGE, tmp_path_factory.mktemp("source") / "plugin_package")  # keep builds out of tests/
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("once_toy_plugin", None)


def test_plugin_package_registers_through_its_entry_point(installed, capsys):
    registry = load_registry()
    part = registry.get("user_encoder", "average")
    assert (part.distribution, part.version, part.plugin) == ("once-toy-plugin", "0.1.0", "toy")
    assert cli(["plugins"], registry) == 0
    listing = capsys.readouterr().out
    assert "average" in listing and "once-toy-plugin" in listing


def test_recipe_naming_the_plugin_trains_with_it(installed, tmp_path):
    registry = load_registry()
    resolved = load_recipe(
        "demo", registry, [*TINY, "model.user={name: average, bias: false}", "requires=[once-toy-plugin>=0.1]"]
    )
    result = train(resolved, runs_root=tmp_path, plugins=registry.distributions())
    assert "once-toy-plugin" in (result.run.path / "run.json").read_text()
    assert result.test["auc"] > 0.6  # a mean of clicked items is a real, if weaker, user model


def test_a_predictor_for_one_task_refuses_a_recipe_of_the_other(installed, tmp_path):
    registry = load_registry()
    overrides = [*TINY, "model.predictor.name=bilinear", "requires=[once-toy-plugin>=0.1]"]
    with pytest.raises(RecipeError) as error:
        train(load_recipe("demo", registry, overrides), runs_root=tmp_path)
    message = str(error.value)
    assert "'bilinear' (model.predictor)" in message and "train.task: ranking only" in message
    assert "sets train.task: matching" in message and error.value.where == "model.predictor"
    assert not list(tmp_path.iterdir())  # refused before a run directory was made
    result = train(
        load_recipe("demo", registry, [*overrides, "train.task=ranking", "train.lr=0.001"]), runs_root=tmp_path
    )
    assert result.epochs[-1]["train_loss"] < result.epochs[0]["train_loss"]  # it learns under its own task
