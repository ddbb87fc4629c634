"""--ages: a TCP socket's :class:`~drgn_ss.sockets.ages.SocketAges` as text after its users
and as the JSON field ``ages``."""

from __future__ import annotations

from typing import Any

from drgn_ss.output.cells import age_text
from drgn_ss.sockets.ages import SocketAges

__all__ = ["ages_fields", "ages_text"]


def ages_text(ages: SocketAges) -> str:
    """`` age:(last_recv=AGE,last_send=AGE,last_ack=AGE[,oldest_unread=AGE][,oldest_unacked=AGE])``."""
    out = (f" age:(last_recv={age_text(ages.last_recv_ms)},last_send={age_text(ages.last_send_ms)},"
           f"last_ack={age_text(ages.last_ack_ms)}")
    if ages.oldest_unread_ms is not None:
        out += f",oldest_unread={age_text(ages.oldest_unread_ms)}"
    if ages.oldest_unacked_ms is not None:
        out += f",oldest_unacked={age_text(ages.oldest_unacked_ms)}"
    return out + ")"


def ages_fields(ages: SocketAges | None) -> dict[str, Any]:
    """The JSON field ``ages`` (null: not a connected TCP socket)."""
    return {"ages": None if ages is None else ages._asdict()}
