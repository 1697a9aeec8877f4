"""How a run uses the machine: its CPU threads, and deterministic mode.

PyTorch's CPU kernels start one thread per core. When other jobs hold some of the cores (a shared lab server, a
laptop with a browser open), those threads wait on each other at every kernel's barrier and training slows down
several times over: on 2 cores the demo trains at 1,733 samples/s with 2 threads on idle cores, but 457 with 2
threads beside one busy process, against 1,250 with 1 thread (docs/benchmarks.md). So the default is the number
of this process's cores (its affinity, capped by a cgroup CPU quota) that are free when the run starts
(measured over 0.2 s from /proc/stat), shared among the processes
torchrun started on this machine. The recipe's `threads` (or `--threads`) fixes it; OMP_NUM_THREADS, when set, is
honoured as a fixed choice too.

`deterministic: true` makes repeated runs of one recipe bit-identical on CPU: one thread (so every float sum has
one order), `torch.use_deterministic_algorithms`, and on CUDA the cuBLAS workspace setting it requires.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

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
    """Cores this process may run on: its CPU affinity (taskset, cpusets), capped by a cgroup CPU quota
    (`docker --cpus`, Kubernetes limits) when there is one."""
    cores = len(_affinity()) or os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text(encoding="ascii").split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def _affinity() -> set[int]:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many of this process's cores (its affinity) other processes kept busy over the last `seconds`, from
    the per-CPU counters of /proc/stat (Linux); None elsewhere."""

    def counters() -> dict[int, tuple[int, int]]:
        found = {}
        with open("/proc/stat", encoding="ascii") as stat:
            for line in stat:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit():
                    values = [int(v) for v in fields]
                    found[int(name[3:])] = (sum(values[:8]), values[3] + (values[4] if len(values) > 4 else 0))
        return found

    try:
        before = counters()
        time.sleep(seconds)
        after = counters()
    except (OSError, ValueError, IndexError):
        return None
    mine = _affinity() or set(after)
    busy = 0.0
    for cpu in mine & set(before) & set(after):
        total, idle = after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1]
        if total > 0:
            busy += 1 - idle / total
    return busy if mine & set(after) else None


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
