"""Text read from kernel memory, made safe to print: names, and messages that quote them.

Kernel memory is hostile input: a process chooses its command name, an unprivileged user in
a network namespace of their own names its interfaces (the kernel refuses only ``/``, ``:``
and whitespace: an escape sequence passes), and a damaged dump holds anything. Nothing read
from it reaches a terminal as it is: the text output escapes it as ss 7.0 escapes process
names (:func:`escape_name`); JSON carries it exactly (:func:`json_name`), the encoder
escaping the control characters; messages on stderr go through :func:`safe_line`.
"""

from __future__ import annotations

__all__ = ["c_string", "escape_bytes", "escape_name", "json_name", "safe_line"]

#: ss's escape_str() (iproute2 7.0+, from procps) as ss runs it, without a locale: control
#: bytes become ".", bytes past ASCII "?"; the rest, quotes and spaces included, stay.
_ESCAPES = bytes(c if 0x20 <= c < 0x7F else 0x2E if c < 0x20 or c == 0x7F else 0x3F for c in range(256))


def escape_name(name: str) -> str:
    """
    A name read from kernel memory (a command name, a cgroup directory, an interface, a
    congestion control), made safe for a terminal as ss 7.0 makes process names: nothing in
    it can end a line or start an escape sequence. ss before 7.0 printed names raw; a name
    of printable ASCII is the same either way.

    :param name: decoded from the kernel's bytes with ``errors="surrogateescape"``, so that
        every byte, UTF-8 or not, becomes one character as in ss (an "é" is "??")
    """
    if name.isascii() and name.isprintable():
        return name
    return name.encode("utf-8", "surrogateescape").translate(_ESCAPES).decode("ascii")


def escape_bytes(data: bytes) -> str:
    """:func:`escape_name` of raw bytes (a release string, a panic message)."""
    return data.translate(_ESCAPES).decode("ascii")


def json_name(name: str) -> str:
    """
    A name read from kernel memory, for JSON: as the kernel has it, with bytes that are not
    UTF-8 replaced by U+FFFD (the JSON encoder escapes the control characters).

    :param name: decoded with ``errors="surrogateescape"``, as for :func:`escape_name`
    """
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def safe_line(text: str) -> str:
    """
    A message for stderr, kept on one line and free of escape sequences whatever it quotes
    (drgn's and libkdumpfile's errors can quote a dump's own bytes): ASCII control characters
    become ".", other characters that are not printable (C1 controls, bytes that were not
    UTF-8, line separators, bidirectional overrides) "?". Printable text, accented letters
    of a file name included, stays as it is.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else "." if ch < "\x80" else "?" for ch in text)


def c_string(buf: bytes, start: int, size: int, errors: str = "replace") -> str:
    """
    The NUL-terminated string in a ``char[size]`` at ``start`` (a task's comm, a device's
    name), decoded from UTF-8 with ``errors`` ("surrogateescape" keeps every byte).
    """
    return buf[start : start + size].split(b"\0", 1)[0].decode(errors=errors)
