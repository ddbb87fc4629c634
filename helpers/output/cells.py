"""Small cells of the text that more than one printer makes: timers, ages, skmem, addresses."""

from __future__ import annotations

import _socket as socket  # the C module: "socket" adds 2.5 ms of start-up (enums, selectors)
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Cache", "address_text", "age_text", "ipv6_text", "ms_timer", "protocol_name", "skmem_text"]


def ms_timer(timeout: int) -> str:
    """ss's print_ms_timer(): 1min23sec, 15sec, 1.234ms, 250ms..."""
    secs, msecs = divmod(timeout, 1000)
    minutes, secs = divmod(secs, 60)
    out = ""
    if minutes:
        msecs = 0
        out = f"{minutes}min"
        if minutes > 9:
            secs = 0
    if secs:
        if secs > 9:
            msecs = 0
        out += f"{secs}{'.' if msecs else 'sec'}"
    if msecs:
        out += f"{msecs:03d}ms"
    return out
def age_text(ms: int) -> str:
    """An age: ``250ms``, ``2.5s``, ``3min12s``, ``2h05min``, ``3d04h``."""
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms // 100 / 10:g}s"
    s = ms // 1000
    if s < 3600:
        return f"{s // 60}min{s % 60}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}min"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def protocol_name(number: int) -> str:
    """inet_proto_n2a(): an IP protocol's name in /etc/protocols, else ``ipproto-N``."""
    import ctypes  # only for raw sockets' ports

    libc = ctypes.CDLL(None)
    libc.getprotobynumber.restype = ctypes.POINTER(ctypes.c_char_p)
    entry = libc.getprotobynumber(number)
    name = entry[0] if entry else None
    return name.decode("ascii", "replace") if name else f"ipproto-{number}"


def skmem_text(values: Sequence[int]) -> str:
    """ss's print_skmeminfo(): `` skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d0)``."""
    r, rb, t, tb, f, w, o, bl, d = values
    return f" skmem:(r{r},rb{rb},t{t},tb{tb},f{f},w{w},o{o},bl{bl},d{d})"


def address_text(addr: bytes) -> str:
    """An IPv4 (4 bytes) or IPv6 (16 bytes) address in its usual text form, no brackets."""
    return socket.inet_ntoa(addr) if len(addr) == 4 else ipv6_text(addr)


def ipv6_text(addr: bytes) -> str:
    """An IPv6 address as inet_ntop() writes it, no brackets."""
    # inet_ntop(): IPv4-mapped and IPv4-compatible forms keep a dotted quad.
    return socket.inet_ntop(socket.AF_INET6, addr)


class Cache(dict[Any, str]):
    """A dict that makes a missing value with ``make(key)`` (and keeps it)."""

    def __init__(self, make: Callable[[Any], str]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key: Any) -> str:
        value = self[key] = self.make(key)
        return value
