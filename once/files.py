"""Where ONCE keeps derived data, and how it writes files so that a crash never leaves half of one."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from once.errors import DataError

if TYPE_CHECKING:
    import numpy as np


def cache_root() -> Path:
    """`$ONCE_CACHE`, else `~/.cache/once`: generated corpora and tokenized data live here."""
    return Path(os.environ.get("ONCE_CACHE") or Path.home() / ".cache" / "once").expanduser()


def file_stamp(path: Path) -> str:
    """A file's size and modification time ("missing" when it is not there): what stands for its contents in a
    cache key, since hashing gigabytes of data would be slow."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def read_text(path: Path) -> str:
    """A UTF-8 text file the user named; anything else is an error naming the file."""
    try:
        return path.read_text(encoding="utf8")
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text ({error.reason} at byte {error.start})", where=str(path)) from None


def umask() -> int:
    """The process's file-creation mask, read without changing it (Linux), else by setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file through a temporary sibling and a rename, so readers see the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf8") if isinstance(data, str) else data
    with disk_space(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~umask())  # the mode open() would give (mkstemp's 0600 hides shared results)
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def map_array(path: Path, rebuild: str) -> np.ndarray:
    """A read-only memory map of an `.npy` file ONCE wrote (never unpickled); a damaged file is an error that names
    it and says how to rebuild it."""
    import numpy as np  # here, not at the top: the command line imports this module and starts without numpy

    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"damaged array file: {error}", where=str(path), hint=rebuild) from None


@contextlib.contextmanager
def disk_space(path: Path) -> Iterator[None]:
    """Turn a full disk (or quota) while writing `path` into an error that names it; what was there before the
    write stays intact, because every ONCE write goes through a temporary file or appends whole lines."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DataError(
            "no space left on the device while writing this file; nothing written before it was lost",
            where=str(path),
            hint=f"Free space on {path.parent} (or point $ONCE_CACHE / --out elsewhere) and run the command again.",
        ) from None


LOCK = ".lock"  # the lock file `exclusive` holds in a folder a process is writing (run directory, state cache)


@contextlib.contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` while the block runs: a second ONCE process working on the same
    `what` stops with an error instead of corrupting it. The lock dies with its process, even under kill -9."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise DataError(
                f"{what} is in use by another ONCE process (pid {holder})",
                where=str(lock_file.parent),
                hint="Wait for that process to finish or stop it; two processes writing it at once would corrupt it.",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=2) + "\n")


@contextlib.contextmanager
def building(folder: Path) -> Iterator[Path]:
    """Fill a temporary folder, then rename it to `folder`: the folder exists only once complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o777 & ~umask())  # as mkdir would make it, not mkdtemp's 0700
        yield tmp
        if folder.exists():  # another process finished the same work first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
