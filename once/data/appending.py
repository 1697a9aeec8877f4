"""`.npy` files written part by part: the cache's split arrays grow as a streamed split is read, never whole in
memory."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

HEADER = 128  # bytes kept for the .npy header: magic, version, length, the dict padded with spaces, a newline
CHUNK_BYTES = 1 << 25  # what a rewrite of a finished file holds at once


class AppendedArray:
    """A one-dimensional `.npy` file that parts are appended to; `close()` writes its header.

    A string array (`<U`) takes each part at its own width; when the parts' widths differ, `close()` rewrites the
    data at the widest, a chunk at a time."""

    def __init__(self, path: Path, dtype: np.dtype | type | str) -> None:
        self.path, self.dtype = path, np.dtype(dtype)
        self.strings = self.dtype.kind == "U"
        self.segments: list[tuple[np.dtype, int]] = []  # (dtype, rows) of each part, in order
        self.file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.file.write(b"\0" * HEADER)

    @property
    def rows(self) -> int:
        return sum(rows for _, rows in self.segments)

    def append(self, values: np.ndarray) -> None:
        values = np.asarray(values)
        if self.strings:
            values = values.astype(str) if values.dtype.kind != "U" else values
        else:
            values = values.astype(self.dtype, copy=False)
        values = np.ascontiguousarray(values)
        self.segments.append((values.dtype, len(values)))
        values.tofile(self.file)

    def abandon(self) -> None:
        """Close the file without finishing it (the folder it is in is being thrown away)."""
        self.file.close()

    def close(self) -> None:
        filled = [dtype for dtype, rows in self.segments if rows]
        widest = max(filled, key=lambda d: d.itemsize, default=np.dtype("U1"))
        dtype = widest if self.strings else self.dtype
        if any(d != dtype for d, rows in self.segments if rows):
            self._widen(dtype)
        self.file.seek(0)
        self.file.write(header(dtype, self.rows))
        self.file.close()

    def _widen(self, dtype: np.dtype) -> None:
        """Rewrite the parts at one string width, through a sibling file."""
        self.file.flush()
        wide = self.path.with_name(self.path.name + ".wide")
        with open(wide, "wb") as out:
            out.write(b"\0" * HEADER)
            offset = HEADER
            for part_dtype, rows in self.segments:
                part = np.memmap(self.path, part_dtype, "r", offset, (rows,)) if rows else np.empty(0, part_dtype)
                chunk = max(1, CHUNK_BYTES // dtype.itemsize)
                for start in range(0, rows, chunk):
                    part[start : start + chunk].astype(dtype).tofile(out)
                offset += rows * part_dtype.itemsize
                del part
        self.file.close()
        os.replace(wide, self.path)
        self.file = open(self.path, "r+b")  # noqa: SIM115 (closed by close())


def header(dtype: np.dtype, rows: int) -> bytes:
    """A version 1.0 `.npy` header of exactly HEADER bytes for a C-ordered one-dimensional array."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows,)})
    body = text.encode("latin1")
    room = HEADER - 10 - 1 - len(body)
    assert room >= 0, text  # a dtype descriptor is short; a row count has at most 20 digits
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", HEADER - 10) + body + b" " * room + b"\n"


def remap_in_place(path: Path, mapping: np.ndarray) -> None:
    """Replace every value v of an integer `.npy` file by mapping[v], a chunk at a time through reads and writes
    (a memory map would keep the touched pages in the process's resident memory)."""
    with open(path, "r+b") as file:
        np.lib.format.read_magic(file)  # version 1.0: AppendedArray wrote it
        shape, _, dtype = np.lib.format.read_array_header_1_0(file)
        start, chunk = file.tell(), CHUNK_BYTES // dtype.itemsize
        for first in range(0, shape[0], chunk):
            file.seek(start + first * dtype.itemsize)
            values = np.fromfile(file, dtype, min(chunk, shape[0] - first))
            file.seek(start + first * dtype.itemsize)
            mapping[values].astype(dtype, copy=False).tofile(file)
