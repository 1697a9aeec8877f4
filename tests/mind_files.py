"""A small MIND folder written to disk, for reader and bad-input tests."""

from __future__ import annotations

from pathlib import Path

NEWS = [
    "N1\tsports\tsoccer\tThe match ended in a draw\tTwo teams met.\thttp://x\t[]\t[]",
    "N2\tfinance\tmarkets\tStocks rise again\tMarkets rallied.\t\t[]\t[]",
    "N3\tsports\ttennis\tChampion wins the final\t\t\t[]\t[]",
    "N4\tweather\tstorms\tStorm hits the coast\tWind and rain.\t\t[]\t[]",
]
BEHAVIORS = [
    "1\tU1\t11/11/2019 9:05:58 AM\tN1 N3\tN2-0 N3-1 N4-0",
    "2\tU2\t11/12/2019 10:05:58 AM\t\tN1-1 N2-0",
    "3\tU1\t11/13/2019 1:05:58 PM\tN1\tN4-0 N3-1 N2-0",
]


def write_mind(root: Path, news=None, behaviors=None, splits=("train", "dev")) -> Path:
    """A small MIND folder; `news`/`behaviors` replace the lines of every split."""
    for split in splits:
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "news.tsv").write_text("".join(f"{line}\n" for line in (news or NEWS)), encoding="utf8")
        (folder / "behaviors.tsv").write_text(
            "".join(f"{line}\n" for line in (behaviors or BEHAVIORS)), encoding="utf8"
        )
    return root
