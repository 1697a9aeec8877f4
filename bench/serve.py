"""`once serve` under load: requests/s and latency percentiles of /recommend with the exact and the HNSW index, the
/items encoding rate, and where a request's time goes.

    python bench/serve.py [--requests 1000] [--concurrency 2] [--write docs/benchmarks.md]

Two catalogues: Goodreads-MIND (5,000 users, 16,833 books; the goodreads-nrms run of bench/metrics.py when the
cache has it, else one trained for an epoch) and the MIND-small-sized synthetic corpus (65,238 items; the demo
recipe trained for 50 steps: latency does not depend on how well it ranks). Each server runs in its own process on
127.0.0.1 with a bearer token; the load is an httpx async loop of a fixed number of requests from this process,
`--concurrency` at a time, for random users of the data, which stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goodreads import DEFAULT_BUILDER, build_benchmark, write_section  # noqa: E402

TOKEN = "bench-token"


def trained_run(corpus: str, builder: Path):
    from rich.console import Console

    from once.files import cache_root
    from once.recipe import load_recipe
    from once.runs import BEST
    from once.seeds import existing_run
    from once.train import train

    quiet = Console(stderr=True, quiet=True)
    if corpus == "goodreads":
        folder = build_benchmark(builder, 5000, 0, "none")
        metrics = "[auc, mrr, ndcg, hit, recall, global_auc, ild, novelty, popularity, tail, coverage, gini, "
        metrics += "personalisation]"
        reused = load_recipe(
            "goodreads-nrms", None, [f"dataset.path={folder}", f"eval.metrics={metrics}", "seed=0", "train.epochs=3"]
        )
        run = existing_run(cache_root() / "bench-runs" / "metrics", reused)
        if run is not None and (run.path / BEST).exists():
            return run.path
        resolved = load_recipe("goodreads-nrms", None, [f"dataset.path={folder}", "train.epochs=1", "seed=0"])
    else:
        resolved = load_recipe("demo", None, ["dataset.size=mind-small", "train.epochs=1", "train.max_steps=50"])
    root = cache_root() / "bench-runs" / "serve"
    run = existing_run(root, resolved)
    if run is None or not (run.path / BEST).exists():
        print(f"training a model for {corpus} ...", file=sys.stderr, flush=True)
        run = train(resolved, runs_root=root, console=quiet).run
    return run.path


class Server:
    def __init__(self, run_dir: Path, index: str, folder: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        (folder / "token").write_text(TOKEN)
        command = [sys.executable, "-m", "once", "serve", str(run_dir), "--port", str(self.port), "--index", index]
        command += ["--token-file", str(folder / "token"), "--items-db", str(folder / f"{index}.sqlite3")]
        command += ["--log-level", "warning"]
        self.log = folder / f"{index}.log"
        self.process = subprocess.Popen(command, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        started = time.perf_counter()
        while True:
            if self.process.poll() is not None:
                raise SystemExit(self.log.read_text())
            try:
                if httpx.get(f"{self.url}/health", headers=headers()).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        self.startup = time.perf_counter() - started
        self.info = httpx.get(f"{self.url}/info", headers=headers()).json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def load(url: str, bodies: list[dict], concurrency: int, path: str) -> tuple[float, np.ndarray]:
    """(seconds, per-request latency in ms) of posting every body, `concurrency` at a time."""
    import httpx

    latencies = np.zeros(len(bodies))
    queue = iter(range(len(bodies)))
    async with httpx.AsyncClient(base_url=url, headers=headers(), timeout=60) as client:

        async def worker():
            for i in queue:
                began = time.perf_counter()
                response = await client.post(path, json=bodies[i])
                latencies[i] = (time.perf_counter() - began) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{path}: {response.status_code} {response.text}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies


def breakdown(run_dir: Path, index: str, users: list[str]) -> dict[str, float]:
    """Median ms of a request's parts in-process: user vector, index proposal, scoring by the model."""
    import torch

    from once.server.catalogue import Catalogue
    from once.server.store import ItemStore

    with tempfile.TemporaryDirectory() as folder:
        catalogue = Catalogue(run_dir, index, ItemStore(Path(folder) / "items.sqlite3"))
        parts = {"user vector": [], "proposal": [], "scoring + top k": []}
        for user in users:
            query = catalogue.user_query(user)
            began = time.perf_counter()
            vector = catalogue.user_vector(query)
            parts["user vector"].append(time.perf_counter() - began)
            began = time.perf_counter()
            if catalogue.index is not None:
                pool = catalogue.index.search(vector.reshape(1, -1).numpy(), 100 + len(catalogue.seen(query)))
                pool = torch.from_numpy(np.unique(pool[pool > 0]))
            else:
                pool = torch.arange(1, catalogue.items + 1)
            parts["proposal"].append(time.perf_counter() - began)
            began = time.perf_counter()
            scores = catalogue.trained.pool_scores(query.user, pool, vector)
            scores.topk(10)
            parts["scoring + top k"].append(time.perf_counter() - began)
    return {name: float(np.median(values) * 1000) for name, values in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--items", type=int, default=500, help="new items posted, 100 per request")
    parser.add_argument("--corpora", nargs="*", default=["goodreads", "mind-small"])
    parser.add_argument("--builder", type=Path, default=DEFAULT_BUILDER)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    from once.trained import TrainedModel

    rows, parts = [], []
    started = time.perf_counter()
    for corpus in args.corpora:
        run_dir = trained_run(corpus, args.builder)
        trained = TrainedModel(run_dir)
        rng = np.random.default_rng(0)
        known = [trained.data.users[u] for u in sorted(trained._latest)]
        users = [known[i] for i in rng.integers(0, len(known), args.requests)]
        bodies = [{"user_id": user, "k": 10} for user in users]
        titles = [trained.titles[i] for i in rng.integers(1, trained.data.num_items, args.items)]
        posts = [
            {"items": [{"id": f"bench-{n + i}", "fields": {"title": t}} for i, t in enumerate(titles[n : n + 100])]}
            for n in range(0, len(titles), 100)
        ]
        del trained
        for index in ("exact", "hnsw"):
            with tempfile.TemporaryDirectory() as folder:
                server = Server(run_dir, index, Path(folder))
                try:
                    asyncio.run(load(server.url, bodies[:50], args.concurrency, "/recommend"))  # warm-up
                    seconds, latency = asyncio.run(load(server.url, bodies, args.concurrency, "/recommend"))
                    posting, _ = asyncio.run(load(server.url, posts, 1, "/items"))
                finally:
                    server.stop()
            rows.append(
                {
                    "corpus": corpus,
                    "index": index,
                    "items": server.info["items"],
                    "recall": server.info["recall_at_10"],
                    "startup": server.startup,
                    "rps": len(bodies) / seconds,
                    "p50": float(np.percentile(latency, 50)),
                    "p90": float(np.percentile(latency, 90)),
                    "p99": float(np.percentile(latency, 99)),
                    "items_per_s": args.items / posting,
                }
            )
            parts.append((corpus, index, breakdown(run_dir, index, users[:200])))
            print(rows[-1], file=sys.stderr, flush=True)
    report = tables(rows, parts, args, time.perf_counter() - started)
    print(report)
    if args.write:
        write_section(args.write, "serve", report)


def tables(rows: list[dict], parts: list, args, seconds: float) -> str:
    lines = [
        f"{args.requests} `/recommend` requests (k = 10, random users of the data, {args.concurrency} at a time) "
        "from an httpx async loop in another process on 127.0.0.1; the server holds 2 threads of torch. "
        f"`/items`: {args.items} new items posted 100 per request, encoded and indexed.",
        "",
        "| catalogue | index | items | recall@10 vs exact | start s | requests/s | p50 ms | p90 ms | p99 ms "
        "| /items items/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        recall = "exact" if r["recall"] is None else f"{r['recall']:.3f}"
        lines.append(
            f"| {r['corpus']} | {r['index']} | {r['items']:,} | {recall} | {r['startup']:.1f} | {r['rps']:.0f} "
            f"| {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | {r['items_per_s']:.0f} |"
        )
    lines += [
        "",
        "Where a request's time goes (median ms in-process over 200 of the users; the rest of the latency is HTTP, "
        "JSON and the thread pool):",
        "",
        "| catalogue | index | " + " | ".join(parts[0][2]) + " |",
        "|---|---|" + "---|" * len(parts[0][2]),
    ]
    for corpus, index, times in parts:
        lines.append(f"| {corpus} | {index} | " + " | ".join(f"{t:.2f}" for t in times.values()) + " |")
    lines += [
        "",
        f"Command: `python bench/serve.py --requests {args.requests} --concurrency {args.concurrency}` "
        f"({seconds / 60:.1f} min)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
