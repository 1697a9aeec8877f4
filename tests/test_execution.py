"""How a run uses the machine: the thread setting, deterministic mode, and clean output when not on a terminal."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import TINY

from once.checkpoint import load_tensors
from once.errors import RecipeError
from once.execution import busy_cores, choose_threads, configure
from once.runs import BEST
from once.train import train


@pytest.fixture
def restore_torch():
    """configure() sets process-wide torch state; put it back for the tests that follow."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def test_deterministic_runs_are_bit_identical_and_say_so(tiny, tmp_path, restore_torch):
    torch.set_num_threads(2)
    results = [train(tiny("deterministic=true", "train.epochs=2"), runs_root=tmp_path / str(i)) for i in range(2)]
    first, second = results
    assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    timing = ("samples_per_s", "seconds")
    records = [[{k: v for k, v in r.items() if k not in timing} for r in result.epochs] for result in results]
    assert records[0] == records[1]  # every loss and metric equal to the last bit; only the speed differs
    assert first.test == second.test
    weights = [load_tensors(result.run.path / BEST)[0] for result in results]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    info = json.loads((first.run.path / "run.json").read_text())
    assert (info["threads"], info["deterministic"]) == (1, True)


def test_the_recipe_sets_the_threads_and_run_json_records_them(tiny, tmp_path, restore_torch):
    result = train(tiny("threads=2", "train.epochs=1"), runs_root=tmp_path)
    assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()
    info = json.loads((result.run.path / "run.json").read_text())
    assert (info["threads"], info["deterministic"]) == (2, False)
    assert tiny("threads=2").fingerprint == tiny("threads=1").fingerprint == tiny().fingerprint  # how, not what


def test_deterministic_mode_refuses_more_threads(restore_torch):
    with pytest.raises(RecipeError, match="deterministic: true runs on one CPU thread, but threads is 2"):
        configure(2, True)


def test_automatic_threads_follow_the_free_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("once.execution.usable_cores", lambda: 8)
    monkeypatch.setattr("once.execution.busy_cores", lambda: 3.4)  # what another job holds
    assert choose_threads(None) == (5, "auto: 5 of 8 cores free")
    assert choose_threads(None, local_processes=2) == (2, "auto: 5 of 8 cores free, shared by 2 processes")
    monkeypatch.setattr("once.execution.busy_cores", lambda: 9.0)
    assert choose_threads(None)[0] == 1  # never zero
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(None) == (3, "OMP_NUM_THREADS")
    assert choose_threads(4) == (4, "the recipe's threads or --threads")


def test_busy_cores_sees_a_busy_process():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = busy_cores(0.5)
    finally:
        spinner.kill()
    assert busy is not None and busy >= 0.7  # at least the spinner's core (others may be busy too)


def test_output_to_a_file_is_clean_lines(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "once", "train", *(f"--set={o}" for o in [*TINY, "train.epochs=1"]), "--out", "runs"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ONCE_CACHE": str(tmp_path / "cache")},  # a fresh cache, so the data is tokenized
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "\n\n\n" not in output and "nan" not in output  # no blank lines where a progress bar would be
    (line,) = [line for line in done.stderr.splitlines() if "tokenizing demo into" in line]
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO tokenizing demo into \S+/tokenized/[0-9a-f]{20}", line)
    assert re.search(r"^threads \d+ \(auto: \d+ of \d+ cores free\)$", done.stderr, re.MULTILINE)
