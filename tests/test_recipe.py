from pathlib import Path

import pytest

from once.errors import RecipeError
from once.recipe import load_recipe

RECIPE = """\
description: test
dataset:
  name: mind
  path: data/mind
tokenizer: {name: words}
model:
  item: {name: nrms, heads: 4}
  user: {name: nrms}
train:
  epochs: 2
"""


def write(tmp_path: Path, text: str = RECIPE) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf8")
    return path


def test_typo_in_a_core_key_names_path_line_and_suggestion(tmp_path, registry):
    path = write(tmp_path, RECIPE.replace("epochs: 2", "epohcs: 2"))
    with pytest.raises(RecipeError) as error:
        load_recipe(path, registry)
    text = str(error.value)
    assert "line 10, train.epohcs: unknown key; did you mean 'epochs'?" in text
    assert str(path) in text


def test_typo_in_a_plugin_option_is_caught_by_the_plugins_own_model(tmp_path, registry):
    path = write(tmp_path, RECIPE.replace("heads: 4", "haeds: 4"))
    with pytest.raises(RecipeError, match=r"line 7, model\.item\.haeds: unknown key; did you mean 'heads'\?"):
        load_recipe(path, registry)


def test_bad_value_and_unknown_plugin(tmp_path, registry):
    with pytest.raises(RecipeError, match=r"train\.epochs: Input should be greater than or equal to 0"):
        load_recipe(write(tmp_path), registry, ["train.epochs=-1"])
    with pytest.raises(RecipeError) as error:
        load_recipe(write(tmp_path), registry, ["model.user.name=nrsm"])
    assert "unknown user encoder 'nrsm'" in str(error.value)
    assert "Did you mean 'nrms'?" in str(error.value)


def test_resolution_fills_defaults_and_resolves_paths_next_to_the_recipe(tmp_path, registry):
    resolved = load_recipe(write(tmp_path), registry)
    assert resolved.data["dataset"]["path"] == str(tmp_path / "data" / "mind")
    assert resolved.data["model"]["item"] == {
        "name": "nrms",
        "field": "title",
        "word_dim": 300,
        "heads": 4,
        "head_dim": 16,
        "query_dim": 200,
        "dropout": 0.2,
    }
    assert resolved.data["model"]["predictor"] == {"name": "dot"}
    assert resolved.recipe.train.negatives == 4


def test_paths_expand_home_and_environment(tmp_path, registry, monkeypatch):
    monkeypatch.setenv("MIND_HOME", str(tmp_path / "elsewhere"))
    resolved = load_recipe(write(tmp_path), registry, ["dataset.path=$MIND_HOME/small"])
    assert resolved.data["dataset"]["path"] == str(tmp_path / "elsewhere" / "small")
    with pytest.raises(RecipeError, match="environment variable that is not set"):
        load_recipe(write(tmp_path), registry, ["dataset.path=$NO_SUCH_VARIABLE_X/a"])


def test_overrides_change_the_fingerprint(tmp_path, registry):
    path = write(tmp_path)
    base = load_recipe(path, registry)
    assert load_recipe(path, registry).fingerprint == base.fingerprint
    changed = load_recipe(path, registry, ["train.lr=1e-3", "model.item.heads=8"])
    assert changed.recipe.train.lr == 1e-3 and changed.data["model"]["item"]["heads"] == 8
    assert changed.fingerprint != base.fingerprint
    described = load_recipe(path, registry, ["description=another"])
    assert described.fingerprint == base.fingerprint  # words about a run do not change what it computes


def test_missing_required_package_says_what_to_install(tmp_path, registry):
    text = RECIPE + "requires: ['once-news-extras>=2.0', 'once>=0.1']\n"
    with pytest.raises(RecipeError) as error:
        load_recipe(write(tmp_path, text), registry)
    assert "once-news-extras>=2.0 (not installed)" in str(error.value)
    assert "pip install 'once-news-extras>=2.0'" in str(error.value)
    too_new = RECIPE + "requires: ['once>=99']\n"
    with pytest.raises(RecipeError, match=r"once>=99 \(installed: "):
        load_recipe(write(tmp_path, too_new), registry)


def test_bad_overrides_and_yaml(tmp_path, registry):
    with pytest.raises(RecipeError, match="not of the form key.sub=value"):
        load_recipe(write(tmp_path), registry, ["train.lr"])
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write(tmp_path, "dataset: [unclosed\n"), registry)
    with pytest.raises(RecipeError, match="(?s)no recipe file 'dmeo'.*Did you mean 'demo'"):
        load_recipe("dmeo", registry)


def test_an_override_error_names_the_set_argument_not_a_file_line(registry):
    with pytest.raises(RecipeError) as error:
        load_recipe("demo", registry, ["train.lrr=0.1"])
    assert "--set train.lrr=0.1, train.lrr: unknown key; did you mean 'lr'?" in error.value.message
    assert "line " not in error.value.message
    with pytest.raises(RecipeError) as error:
        load_recipe("demo", registry, ["model.item.name=nrmz"])
    assert error.value.where == "built-in recipe 'demo' (--set model.item.name=nrmz)"
    with pytest.raises(RecipeError) as error:  # a key the file has, set twice: the last --set is blamed
        load_recipe("demo", registry, ["train.epochs=1", "train.epochs=-1"])
    assert "--set train.epochs=-1, train.epochs:" in error.value.message
