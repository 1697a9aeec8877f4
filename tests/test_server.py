"""`once serve`: the real server on 127.0.0.1, called over HTTP with httpx."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import TINY

from once.cli import run as cli
from once.recipe import load_recipe
from once.train import train
from once.trained import TrainedModel

TOKEN = "test-token-5f0c2a9e"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, registry) -> Path:
    return train(load_recipe("demo", registry, TINY), runs_root=tmp_path_factory.mktemp("runs")).run.path


@pytest.fixture(scope="module")
def trained(run_dir, registry) -> TrainedModel:
    return TrainedModel(run_dir, registry)


class Server:
    """`once serve` in its own process, stopped when the test is done."""

    def __init__(self, run_dir: Path, folder: Path, *options: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        token_file = folder / "token"
        token_file.write_text(TOKEN + "\n")
        self.log = folder / f"server-{self.port}.log"
        command = [sys.executable, "-m", "once", "serve", str(run_dir), "--port", str(self.port)]
        command += ["--token-file", str(token_file), "--items-db", str(folder / "items.sqlite3"), *options]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start:\n" + self.log.read_text()
            time.sleep(0.2)

    def post(self, path: str, body) -> httpx.Response:
        return self.client.post(path, json=body)

    def stop(self) -> str:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=30)
        return self.log.read_text()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def server(run_dir, folder):
    started = Server(run_dir, folder)
    yield started
    log = started.stop()
    assert TOKEN not in log  # the token never reaches the log
    assert TOKEN not in (folder / "items.sqlite3").read_bytes().decode("latin-1")


def test_recommendations_equal_once_recommend(server, run_dir, registry, tmp_path):
    out = tmp_path / "recs.jsonl"
    users = ["U1", "U7", "U42"]
    command = ["recommend", str(run_dir), "--top", "10", "--out", str(out)]
    assert cli([*command, *[f"--user={u}" for u in users]], registry) == 0
    for line in map(json.loads, out.read_text().splitlines()):
        response = server.post("/recommend", {"user_id": line["user"], "k": 10})
        assert response.status_code == 200, response.text
        served = response.json()["items"]
        assert [i["item"] for i in served] == line["items"]
        # float32's tolerance (torch.testing's): the command encodes the three users in one batch, the server one
        # at a time, and each process takes the threads its start found free; at 2 threads a batch of three and a
        # batch of one differ by 3e-6 here, at 1 thread they do not
        np.testing.assert_allclose([i["score"] for i in served], line["scores"], rtol=1.3e-6, atol=1e-5)


def test_scores_of_a_cold_user_equal_the_models_own_user_encoding(server, trained):
    history, candidates = ["D3", "D10", "D25", "D40"], ["D5", "D7", "D9", "D100"]
    response = server.post("/score", {"history": history, "candidates": candidates})
    assert response.status_code == 200, response.text
    assert [i["item"] for i in response.json()["items"]] == candidates
    indices = torch.tensor([[trained.item_index[i] for i in history]])
    cands = torch.tensor([[trained.item_index[i] for i in candidates]])
    with torch.no_grad():
        vectors = trained.model.encode_items(torch.cat([indices[0], cands[0]]))
        user = trained.model.encode_users(vectors[None, :4], indices, torch.tensor([0]))  # user 0: never seen
        expected = trained.model.predict(user, vectors[None, 4:], torch.tensor([0]), cands, indices)[0]
    np.testing.assert_allclose([i["score"] for i in response.json()["items"]], expected.numpy(), atol=1e-5)
    # the model's full forward for an unseen user agrees
    with torch.no_grad():
        full = trained.model(indices, cands, torch.tensor([0]))[0]
    np.testing.assert_allclose(expected.numpy(), full.numpy(), atol=1e-5)
    recommended = server.post("/recommend", {"history": history, "k": 5}).json()["items"]
    assert len(recommended) == 5 and not {i["item"] for i in recommended} & set(history)


def test_a_posted_item_is_encoded_like_its_twin_and_recommended_for_its_topic(server, trained, run_dir, folder):
    data = trained.data
    topic = data.features["category"]
    vocab = data.category_vocab["category"]
    first = int(topic[1])
    same = [i for i in range(1, data.num_items) if int(topic[i]) == first]
    history, twin = [data.item_ids[i] for i in same[:6]], same[6]
    item = {"id": "NEW-1", "fields": {"title": data.titles[twin], "category": vocab[first]}}
    response = server.post("/items", {"items": [item]})
    assert response.status_code == 200, response.text
    assert response.json() == {"added": 1, "items": data.num_items}
    scores = server.post("/score", {"history": history, "candidates": ["NEW-1", data.item_ids[twin]]}).json()
    new, old = (i["score"] for i in scores["items"])
    assert new == pytest.approx(old, abs=1e-5)  # same text, same vector
    ranked = [i["item"] for i in server.post("/recommend", {"history": history, "k": 1000}).json()["items"]]
    assert abs(ranked.index("NEW-1") - ranked.index(data.item_ids[twin])) <= 1  # its twin's place
    above = set(ranked[: ranked.index("NEW-1")])  # for its topic: above most items of the other topics
    others = [data.item_ids[i] for i in range(1, data.num_items) if int(topic[i]) != first]
    assert sum(item not in above for item in others) >= 0.8 * len(others)
    again = server.post("/items", {"items": [item]})
    assert again.status_code == 422 and "NEW-1" in again.json()["detail"]
    info = server.client.get("/info").json()
    assert info["posted_items"] == 1 and info["items"] == data.num_items
    # kept: a new server over the same items database knows the item
    restarted = Server(run_dir, folder)
    try:
        kept = restarted.post("/score", {"history": history, "candidates": ["NEW-1"]}).json()["items"][0]["score"]
        assert kept == pytest.approx(new, rel=1.3e-6, abs=1e-5)  # another process, maybe other threads (above)
    finally:
        restarted.stop()


def test_refusals(server):
    url = server.client.base_url
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = httpx.post(f"{url}/recommend", json={"user_id": "U1"}, headers=headers)
        assert response.status_code == 401 and response.content == b""
    assert httpx.get(f"{url}/info").status_code == 401
    unknown = server.post("/recommend", {"history": ["D3", "NOPE-7"]})
    assert unknown.status_code == 422 and "NOPE-7" in unknown.json()["detail"]
    assert "U-nobody" in server.post("/recommend", {"user_id": "U-nobody"}).json()["detail"]
    both = server.post("/recommend", {"user_id": "U1", "history": ["D3"]})
    assert both.status_code == 422 and "exactly one of user_id and history" in both.text
    assert server.post("/recommend", {"user_id": "U1", "k": 0}).status_code == 422
    assert server.post("/items", {"items": [{"id": "N2", "fields": {"body": "x"}}]}).status_code == 422
    huge = server.post("/items", {"items": [{"id": "N3", "fields": {"title": "x" * (2 << 20)}}]})
    assert huge.status_code == 413
    streamed = server.client.post(
        "/items", content=iter([b'{"items": [', b" " * (1 << 20), b"]}"]), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413  # no Content-Length: counted as it streams


def test_reload_under_load_loses_no_request(server):
    before = server.client.get("/info").json()
    statuses: list[int] = []
    stop = threading.Event()

    def load():
        with httpx.Client(base_url=server.client.base_url, headers=server.client.headers, timeout=60) as client:
            while not stop.is_set():
                statuses.append(client.post("/recommend", json={"user_id": "U3", "k": 5}).status_code)

    workers = [threading.Thread(target=load) for _ in range(3)]
    for worker in workers:
        worker.start()
    reloaded = server.post("/reload", {})
    refused = server.post("/reload", {"run": "no-such-run"})
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while server.client.get("/info").json()["loaded_at"] == reloaded.json()["loaded_at"]:
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.2)
    stop.set()
    for worker in workers:
        worker.join()
    assert reloaded.status_code == 200 and reloaded.json()["loaded_at"] > before["loaded_at"]
    assert refused.status_code == 409 and "no-such-run" in refused.json()["detail"]
    assert len(statuses) > 10 and set(statuses) == {200}
    assert server.client.get("/info").json()["posted_items"] == before["posted_items"]


def test_hnsw_index_proposes_what_the_model_scores(run_dir, tmp_path, trained):
    server = Server(run_dir, tmp_path, "--index", "hnsw")
    try:
        info = server.client.get("/info").json()
        assert info["index"] == "hnsw" and info["recall_at_10"] >= 0.9
        served = server.post("/recommend", {"user_id": "U7", "k": 10}).json()["items"]
        exact = trained.recommend(["U7"], top=10)["U7"]
        assert len(served) == 10
        scores = {r.item: r.score for r in trained.recommend(["U7"], top=trained.data.num_items)["U7"]}
        for item in served:  # every score is the model's own
            assert item["score"] == pytest.approx(scores[item["item"]], abs=1e-5)
        assert len({i["item"] for i in served} & {r.item for r in exact}) >= 8
    finally:
        server.stop()


def test_stored_items_a_run_cannot_take_are_left_out_not_a_refusal(run_dir, tmp_path):
    from once.server.catalogue import Catalogue
    from once.server.store import ItemStore

    store = ItemStore(tmp_path / "items.sqlite3")
    store.add([("D5", {"title": "an id the data has now"}), ("N-7", {"body": "a field the run does not read"})])
    store.add([("N-8", {"title": "storm closes the pass"})])
    catalogue = Catalogue(run_dir, "exact", store)
    assert catalogue.posted == 1 and "N-8" in catalogue.trained.item_index
