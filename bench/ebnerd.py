"""Reading and tokenizing EB-NeRD: behaviour rows/s and peak memory on a synthetic corpus in EB-NeRD's schema.

    python bench/ebnerd.py [--rows 1000000 2000000] [--users 200000] [--write docs/benchmarks.md]

The corpus is written with pyarrow in the official Arrow types (tests/ebnerd_files.py's schema) at a stated
size: `--rows` behaviour rows per split (train and validation), 10 in-view articles and one click per row,
125,000 articles, `--users` users (default: one per 5 rows) each with a fixed history of 40 articles. Each
measurement runs in its own process (peak RSS is the process's): reading the files into ONCE's corpus
(`read_ebnerd`, every part of every split), then preparing it (`once.data.prepare`: the reader, the words
tokenizer over the titles, the split arrays appended to the cache part by part).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goodreads import write_section  # noqa: E402

ARTICLES, INVIEW, HISTORY, ROWS_PER_USER = 125_000, 10, 40, 5
WORDS = [
    "politi",
    "storm",
    "regering",
    "sport",
    "fodbold",
    "valg",
    "vejret",
    "kongehuset",
    "musik",
    "film",
    "bolig",
    "skat",
    "bil",
    "tog",
]


def lists(values: np.ndarray, width: int):
    import pyarrow as pa

    offsets = np.arange(0, len(values) + 1, width, dtype=np.int64)
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values.astype(np.int32)))


def write_corpus(root: Path, rows: int, users: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    ids = np.arange(9_000_000, 9_000_000 + ARTICLES, dtype=np.int32)
    titles = [" ".join(rng.choice(WORDS, 6)) + f" {i}" for i in range(ARTICLES)]
    pq.write_table(
        pa.table(
            {
                "article_id": pa.array(ids),
                "title": pa.array(titles),
                "subtitle": pa.array(titles),
                "body": pa.array([""] * ARTICLES),
                "category_str": pa.array(rng.choice(["nyheder", "sport", "krimi"], ARTICLES)),
                "subcategory": lists(rng.integers(100, 200, ARTICLES), 1),
            }
        ),
        root / "articles.parquet",
    )
    for split in ("train", "validation"):
        (root / split).mkdir(parents=True)
        inview = rng.choice(ids, rows * INVIEW)
        clicked = inview[::INVIEW]
        pq.write_table(
            pa.table(
                {
                    "impression_id": pa.array(np.arange(rows, dtype=np.uint32)),
                    "user_id": pa.array(rng.integers(0, users, rows).astype(np.uint32)),
                    "article_ids_inview": lists(inview, INVIEW),
                    "article_ids_clicked": lists(clicked, 1),
                }
            ),
            root / split / "behaviors.parquet",
            row_group_size=250_000,
        )
        pq.write_table(
            pa.table(
                {
                    "user_id": pa.array(np.arange(users, dtype=np.uint32)),
                    "article_id_fixed": lists(rng.choice(ids, users * HISTORY), HISTORY),
                }
            ),
            root / split / "history.parquet",
        )


def measure(root: Path, step: str, cache: Path) -> dict:
    """Run one step in a fresh process: its seconds and peak RSS."""
    code = f"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from goodreads import peak_mb
root, step = Path({str(root)!r}), {step!r}
from once.assembly import load_data
from once.recipe import load_recipe
from once_plugins.datasets.ebnerd import read_ebnerd
began = time.perf_counter()  # after the imports: the work alone
if step == "read":
    corpus = read_ebnerd(root, "skip")
    rows = sum(len(part) for split in corpus.splits.values() for part in split.parts())
else:
    resolved = load_recipe("ebnerd-nrms", None, [f"dataset.path={{root}}", "device=cpu"])
    data = load_data(resolved)
    rows = sum(len(s) for s in data.splits.values())
seconds = time.perf_counter() - began
print(json.dumps({{"rows": rows, "seconds": seconds, "peak_mb": peak_mb()}}))  # VmHWM: not the parent's peak
"""
    env = {**os.environ, "ONCE_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000_000, 2_000_000])
    parser.add_argument("--users", type=int, help="users in the corpus (default: one per 5 behaviour rows)")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as folder:
            root, cache = Path(folder) / "ebnerd", Path(folder) / "cache"
            root.mkdir()
            users = args.users or rows // ROWS_PER_USER
            write_corpus(root, rows, users)
            size = sum(p.stat().st_size for p in root.rglob("*.parquet")) / 2**20
            for step in ("read", "prepare"):
                result = measure(root, step, cache)
                results.append((users, step, size, result))
                print(rows, step, result, file=sys.stderr, flush=True)
    lines = [
        f"Synthetic EB-NeRD (official Arrow schema): per split (train, validation) the stated behaviour rows with "
        f"{INVIEW} in-view articles and one click each, {ARTICLES:,} articles, users with a {HISTORY}-article "
        "history; one process per step, 2 cores.",
        "",
        "| behaviour rows (both splits) | users | Parquet MB | step | seconds | rows/s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for users, step, size, r in results:
        lines.append(
            f"| {r['rows']:,} | {users:,} | {size:.0f} | {step} | {r['seconds']:.1f} | "
            f"{r['rows'] / r['seconds']:,.0f} | {r['peak_mb']:,.0f} |"
        )
    lines += [
        "",
        f"Command: `python bench/ebnerd.py --rows {' '.join(map(str, args.rows))}"
        f"{f' --users {args.users}' if args.users else ''}` "
        f"({(time.perf_counter() - started) / 60:.1f} min)",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(args.write, "ebnerd", report)


if __name__ == "__main__":
    main()
