"""The base of every experiment's settings: a small frozen dataclass, one per recipe.

A recipe's settings say how its result is made — the data, the network, the optimizer, the seeds — and
nothing else, so the results cache keys on them as they are (:func:`~genviz_lib.config.ResultsCache.key`
hashes every field and the class name). Each settings class has :meth:`Settings.for_profile`, which
returns the values of the ``quick``, ``book`` or ``full`` profile; a chapter or a test changes a field
with :meth:`Settings.replace`. Lists given for a field are stored as tuples, so settings stay hashable
and cannot change after the cache has keyed on them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import Profile


@dataclasses.dataclass(frozen=True)
class Settings:
    """Frozen settings of one recipe; subclasses add the fields and :meth:`for_profile`."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))
        self.check()

    def check(self) -> None:
        """Raise ``ValueError`` for settings no recipe can run (called on creation, before any work)."""

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Settings":
        """The settings of a profile (``None`` reads ``GENVIZ_PROFILE``, else ``"book"``)."""
        raise NotImplementedError(f"{cls.__name__} has no for_profile()")

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (checked again)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

