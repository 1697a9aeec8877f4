"""Errors that carry where the problem is and how to fix it; the CLI prints them without a traceback."""

from __future__ import annotations


class OnceError(Exception):
    """A problem the user can fix: `where` names the file, line or key, `hint` says what to do."""

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text}\n{self.hint}" if self.hint else text


class RecipeError(OnceError):
    """A recipe that does not validate."""


class PluginError(OnceError):
    """A plugin that is missing, clashes with another, or does not follow the hook specifications."""


class Interrupted(OnceError):
    """Work stopped by the user (Ctrl-C); what was completed is saved and can be resumed."""


class DataError(OnceError):
    """Input data that does not have the expected format."""


def closest(name: str, choices: list[str] | set[str] | tuple[str, ...]) -> str | None:
    """The choice that looks most like `name`, if any looks like it at all."""
    import difflib

    matches = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None
