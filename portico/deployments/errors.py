"""What a template run raises: a template error with its location, or a value it must fetch first."""

from __future__ import annotations


class TemplateError(ValueError):
    """The template cannot be deployed; `target` is where (e.g. `resources[3].properties.path`)."""

    def __init__(self, message: str, target: str = "", code: str = "InvalidTemplate") -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} (at '{self.target}')" if self.target else self.message


class Pending(Exception):
    """An expression needs a value the runner must fetch first (`key` says which)."""

    def __init__(self, key: tuple[str, ...]) -> None:
        super().__init__(key)
        self.key = key
