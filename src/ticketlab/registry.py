"""Explicit name -> object registries (no import-time magic beyond `register` calls)."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from ticketlab.errors import TicketlabError

T = TypeVar("T")


class Registry(Generic[T]):
    """A dict of named entries whose lookup error lists the valid names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None):
        """Register `entry` under `name`; without `entry`, act as a decorator."""
        if entry is not None:
            self._add(name, entry)
            return entry

        def decorator(obj: T) -> T:
            self._add(name, obj)
            return obj

        return decorator

    def _add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise TicketlabError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
