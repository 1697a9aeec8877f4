"""How a run uses the machine: its CPU threads, and deterministic mode.

PyTorch's CPU kernels start one thread per core. When other jobs hold some of the cores (a shared lab server, a
laptop with a browser open), those threads wait on each other at every kernel's barrier and training slows down
several times over: on 2 cores the demo trains at 1,733 samples/s with 2 threads on idle cores, but 457 with 2
threads beside one busy process, against 1,250 with 1 thread (docs/benchmarks.md). So the default is the number
of cores that are free when the run starts (measured over 0.2 s from /proc/stat), shared among the processes
torchrun started on this machine. The recipe's `threads` (or `--threads`) fixes it; OMP_NUM_THREADS, when set, is
honoured as a fixed choice too.

`deterministic: true` makes repeated runs of one recipe bit-identical on CPU: one thread (so every float sum has
one order), `torch.use_deterministic_algorithms`, and on CUDA the cuBLAS workspace setting it requires.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from once.errors import RecipeError

SAMPLE_SECONDS = 0.2  # how long the CPU counters are watched to see which cores are busy


@dataclass(frozen=True)
class Execution:
    """What this process was set to: recorded in run.json and printed in the run's header."""

    threads: int
    reason: str  # why this many, e.g. "auto: 2 of 2 cores free"
    deterministic: bool

    def describe(self) -> str:
        return f"threads {self.threads} ({self.reason})"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which container limits and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many cores other processes kept busy over the last `seconds` (Linux /proc/stat), or None elsewhere."""

    def counters() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values[:8]), idle

    try:
        total_before, idle_before = counters()
        time.sleep(seconds)
        total_after, idle_after = counters()
        with open("/proc/stat", encoding="ascii") as stat:
            cores = sum(1 for line in stat if line.startswith("cpu") and line[3].isdigit())
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total_after - total_before
    if elapsed <= 0:
        return None
    return cores * (1 - (idle_after - idle_before) / elapsed)


def choose_threads(requested: int | None, local_processes: int = 1) -> tuple[int, str]:
    """(threads, reason): the recipe's number, else OMP_NUM_THREADS, else the free cores shared by this machine's
    processes of the run."""
    if requested is not None:
        return requested, "the recipe's threads or --threads"
    variable = os.environ.get("OMP_NUM_THREADS", "")
    if variable.isdigit() and int(variable) > 0:
        return int(variable), "OMP_NUM_THREADS"
    cores = usable_cores()
    busy = busy_cores()
    free = cores if busy is None else min(cores, max(1, round(cores - busy)))
    threads = max(1, free // local_processes)
    reason = f"auto: {free} of {cores} cores free"
    if local_processes > 1:
        reason += f", shared by {local_processes} processes"
    return threads, reason


def configure(threads: int | None, deterministic: bool, local_processes: int = 1) -> Execution:
    """Set this process's threads and, when asked, deterministic algorithms; what was set."""
    if deterministic:
        if threads is not None and threads > 1:
            raise RecipeError(
                f"deterministic: true runs on one CPU thread, but threads is {threads}",
                where="threads",
                hint="Remove threads (or set it to 1), or set deterministic: false.",
            )
        count, reason = 1, "deterministic: true"
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for deterministic matmuls
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        count, reason = choose_threads(threads, local_processes)
        torch.use_deterministic_algorithms(False)
    torch.set_num_threads(count)
    return Execution(count, reason, deterministic)
