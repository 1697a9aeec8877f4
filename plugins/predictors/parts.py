"""The click predictors of this package: their recipe options and where each lives.

This module is the package's entry point. It imports no heavy dependency: each implementation is named by
reference and imported when a recipe builds it, so `once --help`, `once plugins` and `once recipe validate` stay
fast. The models themselves live one per file beside it.
"""

from __future__ import annotations

from once.api import Options, hookimpl


class DotOptions(Options):
    """No options."""


@hookimpl
def register_predictors(register):
    register("dot", "once_plugins.predictors.dot:DotPredictor", DotOptions)
