"""Damaged kernel memory: the errors a read of it may raise, and :class:`WalkErrors`,
which counts what a walk skipped so that partial output says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from drgn import (
    BadDataError,
    FaultError,
    ObjectAbsentError,
    OutOfBoundsError,
)

__all__ = ["DAMAGE", "WalkErrors", "is_damage", "tolerant", "tolerate", "tolerate_counted"]

T = TypeVar("T")

#: What drgn and its helpers raise when the memory they read is damaged, freed or missing
#: from the dump: a read that faults (FaultError), a malformed dump (BadDataError), an
#: object or index that is not there (ObjectAbsentError, OutOfBoundsError, LookupError), a
#: size or value that makes no sense (ValueError, UnicodeDecodeError among them;
#: OverflowError, as drgn's printk helper on a damaged log ring; ZeroDivisionError, a
#: MemoryError for a length read from memory), a time no clock can show (OSError).
DAMAGE: tuple[type[BaseException], ...] = (
    FaultError, BadDataError, ObjectAbsentError, OutOfBoundsError, LookupError, ValueError,
    OverflowError, ZeroDivisionError, MemoryError, OSError,
)


def is_damage(error: BaseException) -> bool:
    """
    Whether ``error`` says the memory read was damaged (:data:`DAMAGE`), rather than that
    the code reading it is wrong. drgn raises a plain :class:`Exception` for its errors of
    no other kind ("crashed thread not found"): those count too, not their subclasses
    (TypeError, AttributeError: programming errors, which must surface).
    """
    return isinstance(error, DAMAGE) or type(error) is Exception


def tolerant(read: Callable[[], T]) -> T | None:
    """``read()``, or None where it meets damaged memory (:func:`is_damage`)."""
    try:
        return read()
    except Exception as e:
        if is_damage(e):
            return None
        raise


class WalkErrors:
    """What a walk could not read (a freed or filtered page): counted, then reported once."""

    #: What is counted, and how :meth:`describe` names it. "interfaces": interface lists
    #: (for ``%ifname``), shown as ss shows an unknown one: ``%if<index>``; "counters": the
    #: summary's (-s), shown as "?".
    KINDS = (("tables", "hash tables"), ("buckets", "hash chains"), ("sockets", "sockets"),
             ("tasks", "tasks"), ("files", "open files"), ("interfaces", "interface lists"),
             ("counters", "summary counters"), ("namespaces", "network namespace lists"))

    def __init__(self) -> None:
        self.tables = self.buckets = self.sockets = self.tasks = self.files = self.interfaces = 0
        self.counters = 0
        self.namespaces = 0
        #: The first fault's message, as an example for the user.
        self.first = ""
        #: Families whose sockets could not be listed at all, and why (their types cannot
        #: be had: a module without debug info or BTF).
        self.left_out: dict[str, str] = {}

    def _counts(self) -> list[int]:
        return [getattr(self, kind) for kind, _ in self.KINDS]

    def leave_out(self, family: str, reason: str) -> None:
        """Note that ``family``'s sockets are not listed, and why."""
        self.left_out.setdefault(family, reason)

    @property
    def counted(self) -> bool:
        """Whether anything was counted (a family left out aside)."""
        return any(self._counts())

    def __bool__(self) -> bool:
        return self.counted or bool(self.left_out)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WalkErrors):
            return False
        return (self._counts(), self.first) == (other._counts(), other.first)

    def __repr__(self) -> str:
        counts = ", ".join(f"{kind}={getattr(self, kind)}" for kind, _ in self.KINDS)
        return f"WalkErrors({counts}, first={self.first!r})"

    def count(self, what: str, error: Exception | None, n: int = 1) -> None:
        """Count ``n`` faults of one kind (buckets, sockets, tasks, interfaces), ``error`` the first."""
        setattr(self, what, getattr(self, what) + n)
        if n and error is not None and not self.first:
            self.first = str(error)

    def describe(self) -> str:
        parts = [f"{n} {label}" for n, (_, label) in zip(self._counts(), self.KINDS) if n]
        return ", ".join(parts) + (f" (first: {self.first})" if self.first else "")


def tolerate(errors: WalkErrors | None, what: str, error: FaultError) -> None:
    """Count a fault in ``errors`` ("buckets", "sockets", "tasks"), or raise it without them."""
    if errors is None:
        raise error
    errors.count(what, error)


def tolerate_counted(errors: WalkErrors | None, counts: dict[str, int], first: FaultError | None) -> None:
    """
    :func:`tolerate` for faults already counted elsewhere (by :mod:`drgn_ss._fast`):
    ``counts`` by kind, ``first`` the first of them (None if there were none).
    """
    if errors is None:
        if any(counts.values()):
            raise first  # type: ignore[misc]  # _fast keeps the first fault of those it counts
        return
    for what, n in counts.items():
        errors.count(what, first, n)
