"""A small EB-NeRD folder in the official schema (column names and Arrow types as Ekstra Bladet ships them)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

IDS = pa.large_list(pa.int32())
START = datetime(2023, 5, 18, 7, 0)

ARTICLES = [  # article_id, title, subtitle, body, category_str, subcategory
    (9000001, "Storm lukker broen", "Vinden tager til", "Broen er lukket i nat.", "nyheder", [512]),
    (9000002, "Brøndby vinder derbyet", "Sejr i sidste minut", "", "sport", [140, 141]),
    (9000003, "Ny skat på biler", "Regeringen vil", "Forslaget kommer i dag.", "nyheder", []),
    (9000004, "FCK taber hjemme", "Skuffelse i Parken", "Holdet tabte 0-2.", "sport", [140]),
    (9000005, "Sådan bager du boller", "Opskrift", "Mel, gær og vand.", None, None),  # no category
]
BEHAVIORS = {  # split -> (impression_id, user_id, inview, clicked)
    "train": [(1, 101, [9000001, 9000002, 9000003], [9000002]), (2, 102, [9000004, 9000005], [9000004])],
    "validation": [(3, 101, [9000003, 9000004], [9000004]), (4, 103, [9000001, 9000005, 9000002], [9000001])],
}
HISTORIES = {101: [9000002, 9000004], 102: [9000001], 103: [9000005, 9000003, 9000001]}


def write_articles(path: Path, rows=ARTICLES) -> None:
    n = len(rows)
    table = pa.table(
        {
            "article_id": pa.array([r[0] for r in rows], pa.int32()),
            "title": pa.array([r[1] for r in rows], pa.string()),
            "subtitle": pa.array([r[2] for r in rows], pa.string()),
            "last_modified_time": pa.array([START] * n, pa.timestamp("us")),
            "premium": pa.array([False] * n, pa.bool_()),
            "body": pa.array([r[3] for r in rows], pa.string()),
            "published_time": pa.array([START - timedelta(days=1)] * n, pa.timestamp("us")),
            "image_ids": pa.array([[] for _ in rows], pa.large_list(pa.int64())),
            "article_type": pa.array(["article_default"] * n, pa.string()),
            "url": pa.array([f"https://ekstrabladet.dk/{r[0]}" for r in rows], pa.string()),
            "category": pa.array([0 if r[4] is None else 1 for r in rows], pa.int16()),
            "subcategory": pa.array([r[5] for r in rows], pa.large_list(pa.int16())),
            "category_str": pa.array([r[4] for r in rows], pa.string()),
            "total_inviews": pa.array([None] * n, pa.int32()),
            "sentiment_score": pa.array([0.5] * n, pa.float32()),
            "sentiment_label": pa.array(["Neutral"] * n, pa.string()),
        }
    )
    pq.write_table(table, path)


def write_behaviors(path: Path, rows, labeled: bool = True) -> None:
    n = len(rows)
    columns = {
        "impression_id": pa.array([r[0] for r in rows], pa.uint32()),
        "article_id": pa.array([None] * n, pa.int32()),
        "impression_time": pa.array([START + timedelta(minutes=i) for i in range(n)], pa.timestamp("us")),
        "read_time": pa.array([12.0] * n, pa.float32()),
        "scroll_percentage": pa.array([None] * n, pa.float32()),
        "device_type": pa.array([2] * n, pa.int8()),
        "article_ids_inview": pa.array([r[2] for r in rows], IDS),
        "user_id": pa.array([r[1] for r in rows], pa.uint32()),
        "is_sso_user": pa.array([False] * n, pa.bool_()),
        "session_id": pa.array(list(range(n)), pa.uint32()),
    }
    if labeled:
        columns["article_ids_clicked"] = pa.array([r[3] for r in rows], IDS)
    pq.write_table(pa.table(columns), path)


def write_history(path: Path, histories=HISTORIES) -> None:
    users = list(histories)
    table = pa.table(
        {
            "user_id": pa.array(users, pa.uint32()),
            "impression_time_fixed": pa.array(
                [[START - timedelta(hours=len(h) - i) for i in range(len(h))] for h in histories.values()],
                pa.large_list(pa.timestamp("us")),
            ),
            "scroll_percentage_fixed": pa.array(
                [[50.0] * len(h) for h in histories.values()], pa.large_list(pa.float32())
            ),
            "article_id_fixed": pa.array(list(histories.values()), IDS),
            "read_time_fixed": pa.array([[10.0] * len(h) for h in histories.values()], pa.large_list(pa.float32())),
        }
    )
    pq.write_table(table, path)


def write_ebnerd(root: Path, behaviors=None, histories=HISTORIES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_articles(root / "articles.parquet")
    for split, rows in (behaviors or BEHAVIORS).items():
        (root / split).mkdir(exist_ok=True)
        write_behaviors(root / split / "behaviors.parquet", rows)
        write_history(root / split / "history.parquet", histories)
    return root


def write_vectors(path: Path, vectors: dict[int, list[float]], column: str = "contrastive_vector") -> Path:
    """A document-embedding artifact as Ekstra Bladet ships it: article_id and one list<float32> column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "article_id": pa.array(list(vectors), pa.int32()),
            column: pa.array(list(vectors.values()), pa.list_(pa.float32())),
        }
    )
    pq.write_table(table, path)
    return path
