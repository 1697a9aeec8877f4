"""The HTTP API: pydantic requests and responses over the served catalogue, and its hot swap."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from once.errors import DataError, OnceError
from once.registry import Registry
from once.server.catalogue import Catalogue, Query
from once.server.guard import Guard
from once.server.store import ItemStore

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^\S+$")]
MAX_LIST = 10_000  # ids in one history, exclude or candidate list; items in one post
POST_WAIT = 5  # seconds a post waits for a reload before it is told to retry (503): no thread waits for minutes


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Who(Strict):
    user_id: ItemId | None = Field(None, description="a user in the run's data")
    history: list[ItemId] | None = Field(
        None, max_length=MAX_LIST, description="item ids a user clicked, oldest first (a user the model never saw)"
    )

    @model_validator(mode="after")
    def _one_of(self):
        if (self.user_id is None) == (self.history is None):
            raise ValueError("give exactly one of user_id and history")
        return self


class RecommendRequest(Who):
    k: int = Field(10, ge=1, le=1000)
    exclude: list[ItemId] | None = Field(
        None, max_length=MAX_LIST, description="items to leave out (default: the history and, for a user_id, clicks)"
    )
    candidates: list[ItemId] | None = Field(None, min_length=1, max_length=MAX_LIST, description="rank only these")


class ScoreRequest(Who):
    candidates: list[ItemId] = Field(min_length=1, max_length=MAX_LIST)


class ScoredItem(BaseModel):
    item: str
    title: str
    score: float


class Ranked(BaseModel):
    items: list[ScoredItem]


class NewItem(Strict):
    id: ItemId
    fields: dict[
        Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=100_000)]
    ]


class ItemsRequest(Strict):
    items: list[NewItem] = Field(min_length=1, max_length=1000)


class ItemsResponse(BaseModel):
    added: int
    items: int


class ReloadRequest(Strict):
    run: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        None, description="a run's folder name beside the served one (default: the served path again)"
    )


class Info(BaseModel):
    run: str
    fingerprint: str
    models: dict[str, str]
    items: int
    posted_items: int
    index: str
    recall_at_10: float | None = Field(description="HNSW top 10 against the exact top 10, over the data's users")
    new_items: str | None = Field(description="null when POST /items can encode new items, else why not")
    loaded_at: float


class Served:
    """The catalogue being served and its swap: requests take `current` once and finish on it; a reload builds the
    next catalogue aside (posts wait) and swaps it in only when it loaded whole."""

    def __init__(self, run_dir: Path, index: str, store: ItemStore, registry: Registry | None = None) -> None:
        self.run_dir, self.index, self.store, self.registry = run_dir, index, store, registry
        self.writing = threading.Lock()  # posts and reloads, one at a time
        self.current = Catalogue(run_dir, index, store, registry)
        self.loaded_at = time.time()

    def reload(self, run: str | None = None) -> Catalogue:
        """Load the served path again, or the run `run` beside it, which is then the path a later reload loads."""
        target = self.run_dir if run is None else self._beside(run)
        with self.writing:
            fresh = Catalogue(target, self.index, self.store, self.registry)
            self.current, self.loaded_at, self.run_dir = fresh, time.time(), target
        return fresh

    def _beside(self, name: str) -> Path:
        """The run folder called `name` in the served run's runs folder, found by listing it (never a path
        built from what a client sent)."""
        folder = self.run_dir.resolve().parent
        for path in folder.iterdir():
            if path.is_dir() and path.name == name:
                return path
        raise DataError(f"no run called {name!r} beside the served one")


def create_app(served: Served, token: str | None, max_body: int) -> Guard:
    app = FastAPI(
        title="ONCE",
        description="A trained ONCE recommender: recommendations, scores and new items.",
        version="1",
    )

    @app.exception_handler(OnceError)
    async def _refused(request: Request, error: OnceError):
        return JSONResponse({"detail": error.message, "hint": error.hint}, status_code=422)

    def who(catalogue: Catalogue, request: Who) -> Query:
        if request.user_id is not None:
            return catalogue.user_query(request.user_id)
        return catalogue.history_query(request.history)

    def scored(catalogue: Catalogue, indices: list[int], scores: list[float]) -> Ranked:
        ids, titles = catalogue.trained.item_ids, catalogue.trained.titles
        return Ranked(
            items=[ScoredItem(item=ids[i], title=titles[i], score=s) for i, s in zip(indices, scores, strict=True)]
        )

    @app.post("/recommend")
    def recommend(request: RecommendRequest) -> Ranked:
        """The k best items for a user (by id, or by a history of item ids), leaving out `exclude`."""
        catalogue = served.current
        query = who(catalogue, request)
        exclude = None if request.exclude is None else catalogue.item_indices(request.exclude)
        candidates = (
            None if request.candidates is None else list(dict.fromkeys(catalogue.item_indices(request.candidates)))
        )
        return scored(catalogue, *catalogue.rank(query, request.k, exclude, candidates))

    @app.post("/score")
    def score(request: ScoreRequest) -> Ranked:
        """The model's score of each candidate for the user, in the order given."""
        catalogue = served.current
        query = who(catalogue, request)
        indices = catalogue.item_indices(request.candidates)
        return scored(catalogue, indices, catalogue.scores(query, indices).tolist())

    @app.post("/items")
    def items(request: ItemsRequest) -> ItemsResponse:
        """Encode new items from their text fields and make them recommendable at once; they are kept."""
        if not served.writing.acquire(timeout=POST_WAIT):  # a reload is loading the next model
            return JSONResponse(
                {"detail": "the server is loading another model; retry shortly"},
                status_code=503,
                headers={"Retry-After": str(POST_WAIT)},
            )
        try:
            catalogue = served.current
            catalogue.add([item.id for item in request.items], [item.fields for item in request.items], served.store)
        finally:
            served.writing.release()
        return ItemsResponse(added=len(request.items), items=catalogue.items)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> Info:
        catalogue = served.current
        trained = catalogue.trained
        parts = trained.resolved.data["model"]
        return Info(
            run=trained.run.path.name,
            fingerprint=trained.run.info["fingerprint"],
            models={slot: parts[slot]["name"] for slot in ("item", "user", "predictor")},
            items=catalogue.items,
            posted_items=catalogue.posted,
            index=catalogue.index_kind,
            recall_at_10=catalogue.recall,
            new_items=catalogue.trained.encodes_new_items,
            loaded_at=served.loaded_at,
        )

    @app.post("/reload")
    def reload(request: ReloadRequest | None = None) -> Info:
        """Load the served run again (or another run beside it) and swap it in; a broken run is refused and the
        model being served stays."""
        try:
            served.reload(None if request is None else request.run)
        except Exception as error:  # any failure to load leaves the served model as it was
            message = error.message if isinstance(error, OnceError) else f"{type(error).__name__}: {error}"
            return JSONResponse({"detail": f"not reloaded: {message}"}, status_code=409)
        return info()

    return Guard(app, token, max_body)
