"""Unix sockets as ss prints them (misc/ss.c unix_show_sock(), unix_stats_print()): the
bound name and inode where inet sockets have an address and port, ``*`` and the peer's
inode on the peer's side, and ``-e``'s shutdown, file and waiting connections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from drgn_ss.kernel.native import native
from drgn_ss.kernel.strings import json_name, safe_line
from drgn_ss.sockets.record import Socket
from drgn_ss.sockets.unix import UnixExtra, ss_name

__all__ = ["glibc_major_minor", "unix_cells", "unix_columns", "unix_details", "unix_fields", "unix_name_text"]


def _name(name: bytes) -> str:
    """The name as ss makes it text (:func:`~drgn_ss.sockets.unix.ss_name`), every byte kept."""
    return ss_name(name).decode("utf-8", "surrogateescape")


def unix_name_text(name: bytes | None) -> str:
    """
    A unix socket's name as ss prints it: ``*`` if unbound, ``@NAME`` if abstract, else the
    path. Anyone can choose a path or abstract name: characters that are not printable (a
    newline, an escape sequence, bytes that are not UTF-8) are replaced as in messages
    (:func:`~drgn_ss.kernel.strings.safe_line`); printable text stays as ss prints it.
    """
    if name is None:
        return "*"
    return safe_line(_name(name))


def unix_cells(s: Socket) -> tuple[str, str, str, str]:
    """The Local Address, its Port, the Peer Address and its Port cells: ``NAME INODE``, ``* PEER``."""
    extra = cast(UnixExtra, s.extra)
    return f"{unix_name_text(extra.name)} ", str(s.sport), "* ", str(s.dport)


def unix_columns(socks: Sequence[Socket], queue: Mapping[int, str], states: Sequence[str]) -> list[list[str]]:
    """
    The Netid to Port cells of unix sockets, a column at a time (:func:`unix_cells` of each,
    with the netid, state and queues): names made text once each, numbers by list.
    """
    fast = native()
    if fast is not None and isinstance(socks, list) and isinstance(states, tuple):
        return fast.unix_cells(socks, {}, unix_name_text, queue, states)
    names: dict[bytes | None, str] = {}
    local = []
    for s in socks:
        name = cast(UnixExtra, s[23]).name  # s.extra.name
        text = names.get(name)
        if text is None:
            text = names[name] = f"{unix_name_text(name)} "
        local.append(text)
    return [[s[0] for s in socks], [states[s[2]] for s in socks], [queue[s[9]] for s in socks],
            [queue[s[10]] for s in socks], local, [str(s[4]) for s in socks], ["* "] * len(socks),
            [str(s[6]) for s in socks]]


def glibc_major_minor(dev: int) -> tuple[int, int]:
    """
    What ss prints of a dev_t: glibc's major() and minor() of the number it is given, here
    the kernel's own encoding (``d_sb->s_dev``, major << 20 | minor) as unix_diag sends it.
    """
    major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~0xFFF)
    minor = (dev & 0xFF) | ((dev >> 12) & ~0xFF)
    return major, minor


def unix_details(s: Socket) -> str:
    """``ss -e``'s text for a unix socket: `` <->``, `` ino:N dev:MAJ/MIN``, `` peers: N...``."""
    extra = cast(UnixExtra, s.extra)
    out = ""
    if s.shutdown is not None:
        out += f" {'-' if s.shutdown & 1 else '<'}-{'-' if s.shutdown & 2 else '>'}"
    if extra.vfs is not None:
        ino, dev = extra.vfs
        major, minor = glibc_major_minor(dev)
        out += f" ino:{ino} dev:{major}/{minor}"
    if extra.icons is not None:
        out += " peers:" + "".join(f" {ino}" for ino in extra.icons)
    return out


def unix_fields(s: Socket, details: bool) -> dict[str, Any]:
    """
    The JSON fields of a unix socket: ``local_address`` is its name as the kernel has it
    (an abstract name's leading NUL as "@", as ss shows it; null if unbound), with
    ``abstract``; ``local_port`` its inode, ``peer_port`` its peer's (0: none).
    """
    extra = cast(UnixExtra, s.extra)
    name = extra.name
    obj: dict[str, Any] = {
        "local_address": json_name(_name(name)) if name is not None else None,
        "abstract": name is not None and name[:1] == b"\0",
        "peer_address": None,
        "type": s.proto,
    }
    if details:
        obj["vfs"] = ({"inode": extra.vfs[0], "dev": "{}/{}".format(*glibc_major_minor(extra.vfs[1]))}
                      if extra.vfs is not None else None)
        obj["peers"] = list(extra.icons) if extra.icons is not None else None
    return obj
