"""Start-up time of the commands a user runs to look around, each as a fresh process, several times.

    python bench/startup.py                      # this checkout's venv
    python bench/startup.py --python OTHER/.venv/bin/python   # another install, e.g. an older commit

Prints, per command, the median and best wall time over --repeat runs (interpreter start included) and which
heavy libraries the command imported. Nothing here needs the network or a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ("torch", "numpy", "transformers", "peft", "openai", "safetensors")
COMMANDS = (
    ("--help",),
    ("recipe", "ls"),
    ("recipe", "show", "demo"),
    ("recipe", "validate", "demo"),
    ("plugins",),
    ("runs", "{empty}"),
)
# run one command in-process as `once` would and report the heavy modules it left imported
PROBE = f"""
import json, sys
from once.cli import run
code = run(sys.argv[1:])
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)
"""


def measure(python: str, args: tuple[str, ...], repeat: int, cwd: str) -> dict:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run([python, "-m", "once", *args], cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"once {' '.join(args)} failed:\n{done.stderr}")
    probe = subprocess.run([python, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True)
    heavy = json.loads(probe.stderr.strip().splitlines()[-1])
    return {"median_s": statistics.median(times), "best_s": min(times), "heavy": heavy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable, help="interpreter of the install to measure")
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as empty:
        print("| command | median s | best s | heavy imports |\n|---|---|---|---|")
        for command in COMMANDS:
            args = tuple(a.format(empty=empty) for a in command)
            figures = measure(options.python, args, options.repeat, empty)
            label = " ".join(command).replace("{empty}", "EMPTY_DIR")
            heavy = ", ".join(figures["heavy"]) or "none"
            print(f"| `once {label}` | {figures['median_s']:.2f} | {figures['best_s']:.2f} | {heavy} |", flush=True)


if __name__ == "__main__":
    main()
