import yaml
from conftest import TINY

from once.cli import run as cli


def sets(overrides):
    return [arg for item in overrides for arg in ("--set", item)]


def test_recipe_ls_cp_validate_show(tmp_path, registry, capsys):
    assert cli(["recipe", "ls"], registry) == 0
    listing = " ".join(capsys.readouterr().out.split())
    assert "demo" in listing and ">-" not in listing  # folded YAML descriptions are read, not shown raw
    assert "DIRE on the demo corpus" in listing
    copy = tmp_path / "mine.yaml"
    assert cli(["recipe", "cp", "demo", str(copy)], registry) == 0
    assert cli(["recipe", "validate", str(copy)], registry) == 0
    assert "valid" in capsys.readouterr().out
    assert cli(["recipe", "cp", "demo", str(copy)], registry) == 2  # never overwrites
    assert "refusing to overwrite" in capsys.readouterr().err

    copy.write_text(copy.read_text().replace("batch_size: 64", "batchsize: 64"))
    assert cli(["recipe", "validate", str(copy)], registry) == 2
    err = capsys.readouterr().err
    assert "train.batchsize: unknown key; did you mean 'batch_size'?" in err
    assert "Traceback" not in err

    assert cli(["recipe", "show", "demo", "--set", "train.lr=0.01"], registry) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["lr"] == 0.01
    assert shown["model"]["item"]["dropout"] == 0.2  # defaults filled in


def test_data_demo_writes_mind_files(tmp_path, registry, capsys):
    assert cli(["data", "demo", str(tmp_path), "--set", "items=50", "--set", "users=20"], registry) == 0
    news = (tmp_path / "train" / "news.tsv").read_text().splitlines()
    assert len(news) == 50 and all(len(line.split("\t")) == 8 for line in news)
    behaviors = (tmp_path / "test" / "behaviors.tsv").read_text().splitlines()
    assert len(behaviors) == 20 and all(len(line.split("\t")) == 5 for line in behaviors)
    assert cli(["data", "mind", str(tmp_path), "--set", "path=x"], registry) == 2
    assert cli(["data", "demo", str(tmp_path), "--set", "itmes=5"], registry) == 2
    assert "itmes: unknown key; did you mean 'items'?" in capsys.readouterr().err


def test_train_then_runs_table(tmp_path, registry, capsys):
    overrides = [item for item in TINY if not item.startswith("train.epochs")] + ["train.epochs=1"]
    assert cli(["train", "demo", "--out", str(tmp_path), *sets(overrides)], registry) == 0
    out = capsys.readouterr().out
    assert "dev metrics per epoch" in out and "test (best dev epoch)" in out
    assert cli(["runs", str(tmp_path)], registry) == 0
    table = capsys.readouterr().out
    assert "demo" in table and "auc 0." in table


def test_errors_are_one_paragraph_and_debug_shows_the_traceback(registry, capsys):
    assert cli(["train", "demo", "--set", "model.item.name=nrmz"], registry) == 2
    err = capsys.readouterr().err
    assert "unknown item encoder 'nrmz'" in err and "Did you mean 'nrms'?" in err
    assert cli(["eval", "/nonexistent/run"], registry) == 2
    assert "the run directory does not exist" in capsys.readouterr().err
    assert cli(["eval", "/"], registry) == 2  # there, but no run in it
    assert "not a run directory" in capsys.readouterr().err


def test_eval_refuses_an_edited_recipe_and_data_refuses_a_full_folder(tmp_path, registry, capsys):
    overrides = [item for item in TINY if not item.startswith("train.epochs")] + ["train.epochs=1"]
    assert cli(["train", "demo", "--out", str(tmp_path / "runs"), *sets(overrides)], registry) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    recipe = run_dir / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("heads: 2", "heads: 4", 1))
    capsys.readouterr()
    assert cli(["eval", str(run_dir)], registry) == 2
    assert "no longer matches the recipe this run was trained with" in capsys.readouterr().err
    assert cli(["data", "demo", str(run_dir)], registry) == 2
    assert "not empty" in capsys.readouterr().err
