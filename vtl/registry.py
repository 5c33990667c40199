"""Registries of small frozen specs (backbones, training-free scores, study axes): one way to add
an entry, refusing a name that is taken, so that two declarations can never shadow each other."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def register(registry: dict[str, T], name: str, entry: T, what: str) -> T:
    """Add `entry` to `registry` under `name`; returns it.

    Raises:
        ValueError: `name` is already registered (a programming error, not a user's).
    """
    if name in registry:
        raise ValueError(f"{what} {name!r} is already registered")
    registry[name] = entry
    return entry
