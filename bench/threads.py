"""Demo training speed with 1 and 2 CPU threads, on idle cores and beside one busy process; and how much repeated
runs of one recipe vary with and without `deterministic: true`.

    python bench/threads.py                 # speed: idle and loaded, threads 1, 2 and auto (one epoch each)
    python bench/threads.py --variation 3   # also: 3 default runs and 2 deterministic runs of the full demo

Each figure comes from its own `once train` process (the README's command); the busy process is a Python busy
loop this script starts before a measurement and kills after it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def load(busy: bool) -> Iterator[None]:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        yield
    finally:
        if spinner:
            spinner.kill()
            spinner.wait()


def train(out: Path, *args: str) -> dict:
    """One `once train` process; its wall time, threads, samples/s of the first epoch and test metrics."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "once", "train", "--out", str(out), *args], capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    (run,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    info = json.loads((run / "run.json").read_text())
    test = json.loads((run / "test_metrics.json").read_text())
    header = next(line for line in done.stderr.splitlines() if line.startswith("threads "))
    return {
        "seconds": seconds,
        "threads": info["threads"],
        "how": header,
        "samples_per_s": epochs[0]["samples_per_s"],
        "test": test,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variation", type=int, default=0, help="repeated default runs of the full demo")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        train(root / "warm-up", "--set", "train.epochs=1")  # tokenizes the demo once, outside the figures
        print("| cores | threads | samples/s (epoch 1) | wall s (1 epoch + test) |\n|---|---|---|---|")
        for busy in (False, True):
            for threads in ("1", "2", None):
                out = root / f"speed-{busy}-{threads}"
                args = ["--set", "train.epochs=1", *(["--threads", threads] if threads else [])]
                with load(busy):
                    figures = train(out, *args)
                label = figures["how"].removeprefix("threads ")
                cores = "1 busy process beside" if busy else "idle"
                print(f"| {cores} | {label} | {figures['samples_per_s']:.0f} | {figures['seconds']:.1f} |", flush=True)
        if options.variation:
            print("\n| run | threads | test AUC | test MRR |\n|---|---|---|---|")
            for mode, count in (("default", options.variation), ("deterministic", 2)):
                for i in range(count):
                    args = ["--set", "deterministic=true"] if mode == "deterministic" else ["--threads", "2"]
                    figures = train(root / f"{mode}-{i}", *args)
                    test = figures["test"]
                    print(
                        f"| {mode} {i + 1} | {figures['threads']} | {test['auc']:.6f} | {test['mrr']:.6f} |", flush=True
                    )


if __name__ == "__main__":
    main()
