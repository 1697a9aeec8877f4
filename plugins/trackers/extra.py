"""The one error a tracker gives when its library is not installed."""

from __future__ import annotations

from once.api import RecipeError


def missing(tracker: str, package: str, extra: str) -> RecipeError:
    return RecipeError(
        f"the recipe tracks with '{tracker}', which needs the {package} package, and it is not installed",
        where="track",
        hint=f'Install it with: pip install "once[{extra}]" (or drop {tracker} from track / --track).',
    )
