"""Run `once ARGS` in this process and SIGKILL it at a chosen point: the kill-and-resume tests' launcher.

    python tests/killpoint.py TARGET N [MATCH] -- ONCE_ARGS...

TARGET is `module:attribute` (dots allowed in the attribute, e.g. `once.train:Trainer.step`). The process kills
itself with SIGKILL on the N-th call of TARGET whose arguments' text contains MATCH (any call if MATCH is
empty), before the call runs: nothing gets a chance to clean up, exactly as when a machine loses power or the
OOM killer strikes.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys


def arm(target: str, nth: int, match: str = "") -> None:
    module_name, _, path = target.partition(":")
    *owners, name = path.split(".")
    owner = importlib.import_module(module_name)
    for attribute in owners:
        owner = getattr(owner, attribute)
    original = getattr(owner, name)
    calls = 0

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        nonlocal calls
        if match in repr((args, kwargs)):
            calls += 1
            if calls == nth:
                os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def main() -> None:
    separator = sys.argv.index("--")
    target, nth, *rest = sys.argv[1:separator]
    arm(target, int(nth), rest[0] if rest else "")
    from once.cli import main as once_main

    sys.argv = ["once", *sys.argv[separator + 1 :]]
    once_main()


if __name__ == "__main__":
    main()
