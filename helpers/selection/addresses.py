"""iproute2's parsing of addresses, prefixes, ports and devices in a filter
(lib/utils.c get_prefix(), get_addr_ipv4(), strtoul()), in Python.
"""

from __future__ import annotations

import _socket as socket
import re
from dataclasses import dataclass

from drgn_ss.selection.errors import AF_UNSPEC, printable
from drgn_ss.sockets.record import AF_INET, AF_INET6

__all__ = [
    "HostCond", "INT_MAX", "INT_MIN", "LONG_MAX", "UINT_MAX", "ULONG_MAX", "address_hint", "dns_host",
    "get_addr_ipv4", "get_integer", "get_unsigned", "parse_device", "parse_prefix", "split_host",
]

INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1

# C's number parsing (glibc strtol()/strtoul() with base 0, in the C locale).
_C_SPACE = frozenset(" \t\n\v\f\r")
_DIGIT_RUN = {
    8: re.compile("[0-7]*"),
    10: re.compile("[0-9]*"),
    16: re.compile("[0-9a-fA-F]*"),
}
_HEX = frozenset("0123456789abcdefABCDEF")
ULONG_MAX = (1 << 64) - 1
LONG_MAX = (1 << 63) - 1
UINT_MAX = (1 << 32) - 1


def _strto(text: str, start: int = 0, base: int = 0) -> tuple[bool, int, int]:
    """
    What strtol()/strtoul() read of ``text[start:]`` with base 0 (or 10): (negative,
    magnitude, end). ``end`` is ``start`` when there are no digits; a magnitude past 64 bits
    is ULONG_MAX + 1 (the caller saturates), so a long string of digits costs no big number.
    """
    i, n = start, len(text)
    while i < n and text[i] in _C_SPACE:
        i += 1
    negative = False
    if i < n and text[i] in "+-":
        negative = text[i] == "-"
        i += 1
    if base == 10:
        pass
    elif text.startswith(("0x", "0X"), i) and i + 2 < n and text[i + 2] in _HEX:
        base, i = 16, i + 2
    else:
        base = 8 if text.startswith("0", i) else 10
    end = _DIGIT_RUN[base].match(text, i).end()  # type: ignore[union-attr]
    if end == i:
        return False, 0, start
    significant = text[i:end].lstrip("0")
    magnitude = ULONG_MAX + 1 if len(significant) > 22 else int(significant or "0", base)
    return negative, magnitude, end


def _strtoul_value(negative: bool, magnitude: int) -> int:
    """strtoul()'s result: ULONG_MAX on overflow, a negative number wrapped to 64 bits."""
    if magnitude > ULONG_MAX:
        return ULONG_MAX
    return -magnitude & ULONG_MAX if negative else magnitude


def get_integer(text: str) -> int | None:
    """iproute2's get_integer(, 0): all of ``text`` a C int (strtol()), else None."""
    negative, magnitude, end = _strto(text)
    if not text or end == 0 or end != len(text):
        return None
    value = -magnitude if negative else magnitude  # strtol() saturates: out of int range too
    return value if INT_MIN <= value <= INT_MAX else None


def get_unsigned(text: str) -> int | None:
    """iproute2's get_unsigned(, 0): all of ``text`` a C unsigned int (strtoul()), else None."""
    negative, magnitude, end = _strto(text)
    if not text or end == 0 or end != len(text):
        return None
    value = _strtoul_value(negative, magnitude)
    return value if value <= UINT_MAX else None


def get_addr_ipv4(text: str) -> bytes | None:
    """
    iproute2's get_addr_ipv4(): 1 to 4 parts, each strtoul(, 0) up to 255 and ending at a
    dot or the end: "10" is 10.0.0.0, "10.1" is 10.1.0.0.
    """
    out = bytearray(4)
    pos = 0
    for i in range(4):
        negative, magnitude, end = _strto(text, pos)
        value = _strtoul_value(negative, magnitude)
        if value > 255 or end == pos:
            return None
        out[i] = value
        if end == len(text):
            return bytes(out)
        if i == 3 or text[end] != ".":
            return None
        pos = end + 1
    return None  # not reached: the fourth part returns


def _mask_bits(mask: bytes) -> int | None:
    """iproute2's mask2bits(): the prefix length of a netmask, None if it is not one."""
    value = int.from_bytes(mask, "big")
    host = ~value & 0xFFFFFFFF
    if host & (host + 1):
        return None
    return 32 - host.bit_length()


def _netmask(text: str) -> int | None:
    """iproute2's get_netmask(): a prefix length, or a dotted netmask (255.255.0.0)."""
    bits = get_unsigned(text)
    if bits is not None:
        return bits
    parsed = _addr_1(text, AF_INET)
    if parsed is None or parsed[0] != AF_INET:
        return None
    return _mask_bits(parsed[1][:4])


def _addr_1(name: str, family: int) -> tuple[int, bytes, int] | None:
    """
    iproute2's get_addr_1(): (family, address in 16 bytes, -2 for default/any/all else -1),
    None when ``name`` is no address of ``family`` (AF_UNSPEC: either).
    """
    if name in ("default", "all", "any"):
        return family, bytes(16), -2
    if ":" in name:
        if family not in (AF_UNSPEC, AF_INET6):
            return None
        try:
            return AF_INET6, socket.inet_pton(socket.AF_INET6, name), -1
        except (OSError, ValueError):  # ValueError: not UTF-8 (surrogate-escaped bytes)
            return None
    if family not in (AF_UNSPEC, AF_INET):
        return None
    four = get_addr_ipv4(name)
    return None if four is None else (AF_INET, four.ljust(16, b"\0"), -1)


def parse_prefix(text: str, family: int) -> HostCond | None:
    """iproute2's get_prefix_1(): ADDRESS[/LEN|/NETMASK] (or default, any, all), no port."""
    addr_text, slash, length = text.partition("/")
    parsed = _addr_1(addr_text, family)
    if parsed is None:
        return None
    fam, addr, bitlen = parsed
    full = {AF_INET: 32, AF_INET6: 128}.get(fam, 0)
    if slash:
        if bitlen == -2:
            return None
        bits = _netmask(length)
        if bits is None or bits > full:
            return None
    else:
        bits = 0 if bitlen == -2 else full
    return HostCond(family=fam, addr=addr, bits=bits)


_DIGITS_DOTS = re.compile(r"[0-9][0-9.]*")
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _gethostbyname2(name: str, family: int) -> list[bytes]:
    """
    glibc's gethostbyname2(): digits and dots are an IPv4 address as inet_aton() reads it
    (2130706433 is 127.0.0.1) and never an IPv6 one; other names are looked up (hosts file,
    DNS), if they could be a host name at all.
    """
    if _DIGITS_DOTS.fullmatch(name):
        if family != AF_INET or name.endswith("."):
            return []
        try:
            return [socket.inet_aton(name)]
        except OSError:
            return []
    if ":" in name or not _HOST_NAME.fullmatch(name):
        return []
    try:
        socket.inet_aton(name)  # 0x7f000001: a number to getaddrinfo(), a name to glibc's lookup
        return []
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
    except (OSError, ValueError):  # ValueError: IDNA refuses it
        return []
    out = []
    for fam, _type, _proto, _name, sockaddr in infos:
        packed = socket.inet_pton(fam, str(sockaddr[0]))
        if fam == family and packed not in out:
            out.append(packed)
    return out


def dns_host(name: str, family: int) -> list[tuple[int, bytes]]:
    """ss's get_dns_host(): a host name's addresses, IPv4 first when no family is asked for."""
    families = (AF_INET, AF_INET6) if family == AF_UNSPEC else (family,)
    return [(fam, addr) for fam in families for addr in _gethostbyname2(name, fam)]


def split_host(text: str, is_port: bool) -> tuple[str, str | None] | None:
    """
    parse_hostcond()'s split of an address word: (address, port text or None); the port's
    ``:`` is dropped. For sport/dport the whole word (inside brackets, if any) is the port.
    None: a ``[`` without ``]``.
    """
    cut = -1
    port: str | None
    if text.startswith("["):
        inner, bracket, after = text[1:].partition("]")
        if not bracket:
            return None
        addr, port = inner, after
    elif text.startswith("*"):
        addr, port = text, text[1:]
    else:
        colon = text.rfind(":", max(text.find("/"), 0))
        addr, port = text, (text[colon:] if colon >= 0 else None)
        cut = colon
    if is_port:
        addr, port, cut = "", addr, -1
    if port and port[0] == ":":
        port = port[1:]
        if cut >= 0:
            addr = addr[:cut]  # the colon ended the address
    return addr, port


def parse_device(name: str) -> tuple[str, int] | None:
    """
    parse_devcond(): (interface name or "", index or -1). ss takes a name
    (ll_name_to_index(): "lo:1" is lo, the kernel drops an alias; "if5" is index 5 unless
    an interface has that name), then an index (strtoul(, 0), whole, up to UINT_MAX). ss
    looks names up in its own namespace; here the socket's does, later, so a name is only
    checked to be one the kernel takes (dev_valid_name()). None: neither, as a number ss
    cannot read (-1, 08, 4294967296, ²) or a name no interface can have.
    """
    negative, magnitude, end = _strto(name)
    if name and end == len(name) and end > 0:
        value = _strtoul_value(negative, magnitude)
        return ("", value) if value <= UINT_MAX else None
    if name.lstrip("+-").isdigit():
        return None
    index = -1
    if name.startswith("if"):  # ll_idx_a2n(): sscanf(name, "if%u")
        negative, magnitude, end = _strto(name, 2, 10)
        if end > 2:
            index = (_strtoul_value(negative, magnitude) & UINT_MAX) or -1
    alias = name.partition(":")[0]
    raw = alias.encode(errors="surrogateescape")
    if (not raw or len(name.encode(errors="surrogateescape")) >= 16 or raw in (b".", b"..")
            or any(b in b"/ \t\n\v\f\r\xa0" for b in raw)):
        return None if index < 0 else ("", index)
    return alias, index


def address_hint(text: str, addr: str, family: int) -> str:
    """Why ``addr`` (of the word ``text``) is no address, when that is not plain."""
    if family != AF_UNSPEC and parse_prefix(addr, AF_UNSPEC) is not None:
        name = "IPv6" if family == AF_INET6 else "IPv4"
        prefix = "inet6:" if family == AF_INET6 else "inet:"
        return f" (addresses are read as {name} after {prefix} or -{name[-1]})"
    if text[:1] not in ("[", "*") and text.count(":") > 1 and parse_prefix(text, AF_UNSPEC) is not None:
        return f" (an IPv6 address goes in brackets: [{printable(text)}])"
    return ""


@dataclass(frozen=True)
class HostCond:
    """One address-and-port pattern (ss's ``struct aafilter``): port -1 is any port."""

    port: int = -1
    family: int = AF_UNSPEC
    #: The prefix, 16 bytes (an IPv4 address in the first 4), and its length in bits.
    addr: bytes = bytes(16)
    bits: int = 0
