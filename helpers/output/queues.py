"""--queues: a listener's accept and SYN queues and drops, as text after its users and
as JSON fields (:class:`~drgn_ss.sockets.queues.ListenerQueues`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drgn_ss.output.cells import age_text
from drgn_ss.output.text import endpoint_text
from drgn_ss.sockets.queues import ListenerQueues, QueueEntry
from drgn_ss.sockets.unix import AF_UNIX

__all__ = ["oldest_age", "peer_text", "queue_fields", "queue_lines", "queue_text"]


def peer_text(entry: QueueEntry) -> str:
    """A waiting connection's peer as ``ss -n`` shows one: ``ADDR:PORT``, ``[ADDR]:PORT``, ``* INODE``."""
    if entry.family == AF_UNIX:
        return f"* {entry.port}"
    return endpoint_text(entry.addr, entry.port, entry.family, True)


def oldest_age(entries: Sequence[QueueEntry]) -> int | None:
    """The greatest known age of ``entries``, None if none is known."""
    return max((e.age_ms for e in entries if e.age_ms is not None), default=None)


def queue_text(q: ListenerQueues, unix: bool) -> str:
    """`` accept:(LEN/MAX,oldest=AGE) syn:(LEN,oldest=AGE,retrans=N) drops:N`` (no syn: for unix)."""
    oldest = oldest_age(q.accept)
    out = f" accept:({q.accept_len}/{q.accept_max}" + (f",oldest={age_text(oldest)})" if oldest is not None
                                                       else ")")
    if not unix:
        oldest = oldest_age(q.syn)
        out += f" syn:({len(q.syn)}"
        if oldest is not None:
            out += f",oldest={age_text(oldest)}"
        if q.syn:
            out += f",retrans={max(e.retrans or 0 for e in q.syn)}"
        out += ")"
    return out + f" drops:{q.drops}"


def queue_lines(q: ListenerQueues) -> str:
    """-v: each waiting connection and request on a line of its own, oldest first."""
    out = ""
    for kind, entries in (("accept", q.accept), ("syn", q.syn)):
        known = sorted(entries, key=lambda e: -1 if e.age_ms is None else e.age_ms, reverse=True)
        for e in known:
            age = f" age={age_text(e.age_ms)}" if e.age_ms is not None else ""
            retrans = f" retrans={e.retrans}" if e.retrans is not None else ""
            out += f"\n\t{kind} {peer_text(e)}{age}{retrans}"
    return out


def queue_fields(q: ListenerQueues | None, unix: bool) -> dict[str, Any]:
    """The JSON fields ``accept_queue``, ``syn_queue`` and ``drops`` (null: no listener)."""
    if q is None:
        return {"accept_queue": None, "syn_queue": None, "drops": None}
    return {
        "accept_queue": {"len": q.accept_len, "max": q.accept_max, "oldest_ms": oldest_age(q.accept),
                         "entries": [{"peer": peer_text(e), "age_ms": e.age_ms} for e in q.accept]},
        "syn_queue": None if unix else {
            "len": len(q.syn), "oldest_ms": oldest_age(q.syn),
            "entries": [{"peer": peer_text(e), "age_ms": e.age_ms, "retrans": e.retrans} for e in q.syn]},
        "drops": q.drops,
    }
