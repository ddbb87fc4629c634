"""How ss prints --tos and --inet-sockopt (inet_show_sock()), and their JSON fields."""

from __future__ import annotations

from typing import Any

from drgn_ss.sockets.sockopt import InetTos

__all__ = ["c_hex", "sockopt_fields", "sockopt_text", "tos_fields", "tos_text"]


def c_hex(value: int) -> str:
    """printf's ``%#x``: ``0`` for zero (no prefix), ``0x1c`` otherwise."""
    return f"{value:#x}" if value else "0"


def tos_text(tos: InetTos) -> str:
    """`` tos:0x10 tclass:0x20 class_id:0x3``: each attribute inet_diag put on the socket."""
    tclass = f" tclass:{c_hex(tos.tclass)}" if tos.tclass is not None else ""
    return f" tos:{c_hex(tos.tos)}{tclass} class_id:{c_hex(tos.class_id)}"


def sockopt_text(names: tuple[str, ...]) -> str:
    """``inet-sockopt: ( mc_loop mc_all)`` (what precedes it, a new line or not, is -O's)."""
    return "inet-sockopt: (" + "".join(f" {name}" for name in names) + ")"


def tos_fields(tos: InetTos | None) -> dict[str, Any]:
    """--tos in JSON: ``tos``, ``tclass`` (IPv6 sockets) and ``class_id``, numbers; null for a minisock."""
    if tos is None:
        return {"tos": None, "tclass": None, "class_id": None}
    return {"tos": tos.tos, "tclass": tos.tclass, "class_id": tos.class_id}


def sockopt_fields(names: tuple[str, ...] | None) -> dict[str, Any]:
    """--inet-sockopt in JSON: ``inet_sockopt``, the flags set in ss's order; null for a minisock."""
    return {"inet_sockopt": None if names is None else list(names)}
