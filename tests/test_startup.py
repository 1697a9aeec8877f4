"""The commands a user runs to look around start without importing torch, numpy or transformers (the times are
measured by bench/startup.py)."""

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from once.cli import run
code = run(sys.argv[1:])
print(json.dumps({"code": code, "heavy": sorted(m for m in ("torch", "numpy", "transformers") if m in sys.modules)}))
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["recipe", "ls"], ["recipe", "show", "demo"], ["recipe", "validate", "demo-naml"], ["plugins"]],
)
def test_light_commands_do_not_import_heavy_libraries(args, tmp_path):
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=tmp_path)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, done.stderr
