"""The GENRE prompt schemes (summarize, profile, generate): their recipe options and where each lives.

This module is the package's entry point. It imports no heavy dependency: each implementation is named by
reference and imported when a recipe builds it, so `once --help`, `once plugins` and `once recipe validate` stay
fast. The models themselves live one per file beside it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from once.api import Options, hookimpl

Flavour = Literal["news", "books"]


class SchemeOptions(Options):
    flavour: Flavour = "news"
    system: str | None = Field(None, description="replaces the scheme's system message")
    template: str | None = Field(None, description="replaces the scheme's prompt; $field placeholders")


class UserSchemeOptions(SchemeOptions):
    max_history: int = Field(20, ge=1, description="most recent history titles shown in the prompt")


class GenerateOptions(SchemeOptions):
    max_history: int = Field(5, ge=1, description="cold users: at most this many history items; all are shown")
    samples: int = Field(1, ge=1, description="items asked for per cold user (the paper: 2)")
    chain: str | None = Field(None, description="key of a profile scheme whose answers go first in the prompt")


@hookimpl
def register_augmenters(register):
    register("summarize", "once_plugins.genre.schemes:Summarize", SchemeOptions)
    register("profile", "once_plugins.genre.schemes:Profile", UserSchemeOptions)
    register("generate", "once_plugins.genre.schemes:Generate", GenerateOptions)
