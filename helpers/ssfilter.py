"""ss's filter expressions (misc/ssfilter.y, parse_hostcond() and run_ssfilter() in misc/ss.c).

    sport = :22 or ( dport >= 1024 and not dst 10.0.0.0/8 )

Grammar, as ss's: ``and`` (``&``, ``&&``, or nothing between two expressions), ``or``
(``|``, ``||``) and ``not`` (``!``), and parentheses as words of their own; ``and`` and
``or`` group strictly from the left, with no precedence between them (``a or b and c`` is
``(a or b) and c``, as ss's bison grammar reads it). Conditions:

- ``src``/``dst`` [``=``|``==``|``eq``] HOST: ``10.0.0.1``, ``10.0.0.0/8``, ``[::1]``,
  ``[::1]:22``, ``10.0.0.1:ssh``, ``:22``, ``*:22``, ``inet:...``/``inet6:...``, or a host name;
- ``sport``/``dport`` OP PORT, OP one of ``=`` ``==`` ``eq`` ``!=`` ``ne`` ``neq`` ``<``
  ``lt`` ``>`` ``gt`` ``<=`` ``le`` ``leq`` ``>=`` ``ge`` ``geq`` or nothing (``=``); PORT
  ``22``, ``:22``, ``0x16`` or a service name;
- ``dev`` [``=``|``!=``] NAME or index: the device the socket is bound to.

ss filters twice: the kernel runs the expression compiled to inet_diag bytecode, then ss
runs it again on what comes back, and shows a socket only if both pass. They differ only
for addresses of the other family: the kernel's condition never matches a socket of another
family (but an IPv4 condition matches IPv4-mapped IPv6 addresses), while ss's own compares
the bits of the two addresses whatever their families. :meth:`Filter.matches` is both.
"""

from __future__ import annotations

import _socket as socket
import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Union

from drgn_ss.inet import AF_INET, AF_INET6, InetSock

AF_UNSPEC = 0


class SelectionError(ValueError):
    """A bad state name or filter; the message is meant for the user."""


class FilterError(SelectionError):
    """
    A bad expression: the message, and which token it is about (index into ``tokens``;
    ``len(tokens)`` for the end), to point at it.
    """

    def __init__(self, message: str, tokens: Sequence[str], index: int) -> None:
        super().__init__(message)
        self.tokens = list(tokens)
        self.index = index

    def pointer(self) -> str:
        """The expression on one line and a line of ``^`` under the token (or its end), indented."""
        line = " ".join(self.tokens)
        start = len(" ".join(self.tokens[: self.index])) + (1 if self.index > 0 else 0)
        width = len(self.tokens[self.index]) if self.index < len(self.tokens) else 1
        if self.index >= len(self.tokens):
            start = len(line) + (1 if line else 0)
        return f"  {line}\n  {' ' * start}{'^' * max(width, 1)}"


# The words ss's lexer turns into operators.
_NOT = ("!", "not")
_AND = ("&", "&&", "and")
_OR = ("|", "||", "or")
_COMPARE = {
    "=": "eq", "==": "eq", "eq": "eq",
    "!=": "ne", "ne": "ne", "neq": "ne",
    ">=": "ge", "ge": "ge", "geq": "ge",
    "<=": "le", "le": "le", "leq": "le",
    ">": "gt", "gt": "gt",
    "<": "lt", "lt": "lt",
}
_CONDITIONS = ("src", "dst", "sport", "dport", "dev")
_UNSUPPORTED = ("fwmark", "cgroup", "autobound")
_KEYWORDS = frozenset((*_NOT, *_AND, *_OR, *_COMPARE, *_CONDITIONS, *_UNSUPPORTED, "(", ")"))


def tokenize(words: Sequence[str]) -> list[str]:
    """ss's get_token_from_line(): each word split at spaces and tabs; a backslash escapes."""
    tokens = []
    for word in words:
        token: list[str] = []
        started = False
        i = 0
        while i < len(word):
            ch = word[i]
            if ch in " \t":
                if started:
                    tokens.append("".join(token))
                token, started = [], False
            elif ch == "\\":
                started = True
                if i + 1 < len(word):
                    token.append(word[i + 1])
                i += 1
            else:
                token.append(ch)
                started = True
            i += 1
        if started:
            tokens.append("".join(token))
    return tokens


@dataclass(frozen=True)
class HostCond:
    """One address-and-port pattern (ss's ``struct aafilter``): port -1 is any port."""

    port: int = -1
    family: int = AF_UNSPEC
    #: The prefix, 16 bytes (an IPv4 address in the first 4), and its length in bits.
    addr: bytes = bytes(16)
    bits: int = 0


@dataclass(frozen=True)
class Cond:
    """A leaf: ``what`` is "src", "dst" (address and port), "sge"/"sle"/"dge"/"dle" (port
    bounds) or "dev"; ``hosts`` are alternatives (a host name's addresses)."""

    what: str
    hosts: tuple[HostCond, ...] = ()
    dev: str = ""


@dataclass(frozen=True)
class Not:
    arg: Node


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


Node = Union[Cond, Not, And, Or]


def _prefix_match(a: bytes, p: bytes, bits: int) -> bool:
    """inet_addr_match(): the first ``bits`` bits of a and p (both 16 bytes) are equal."""
    whole, rest = divmod(bits, 8)
    if a[:whole] != p[:whole]:
        return False
    if rest:
        mask = 0xFF << (8 - rest) & 0xFF
        return (a[whole] ^ p[whole]) & mask == 0
    return True


_MAPPED = bytes(10) + b"\xff\xff"


def _user_host_match(h: HostCond, addr: bytes, family: int, port: int) -> bool:
    """run_ssfilter()'s SSF_SCOND/SSF_DCOND for one pattern: inet2_addr_match()."""
    if h.port != -1 and h.port != port:
        return False
    if not h.bits:
        return True
    a = addr.ljust(16, b"\0")
    if _prefix_match(a, h.addr, h.bits):
        return True
    # "v4 mapped socket matches pure IPv4 rule".
    return h.family == AF_INET and family == AF_INET6 and addr[:12] == _MAPPED and _prefix_match(
        addr[12:].ljust(16, b"\0"), h.addr, h.bits)


def _kernel_host_match(h: HostCond, addr: bytes, family: int, port: int) -> bool:
    """inet_diag_bc_run()'s INET_DIAG_BC_S_COND/D_COND for one pattern."""
    if h.port != -1 and h.port != port:
        return False
    if h.family != AF_UNSPEC and h.family != family:
        return (family == AF_INET6 and h.family == AF_INET and addr[:12] == _MAPPED
                and _prefix_match(addr[12:].ljust(16, b"\0"), h.addr, h.bits))
    return not h.bits or _prefix_match(addr.ljust(16, b"\0"), h.addr, h.bits)


@dataclass
class Filter:
    """A parsed expression; :meth:`matches` decides a socket as ss does."""

    root: Node
    #: The address family the expression asked for (``inet:``/``inet6:``), else AF_UNSPEC:
    #: ss then shows only that family.
    family: int = AF_UNSPEC
    #: Interface names, for ``dev`` (netns inode, ifindex) -> name; set before matching.
    ifname: Callable[[int, int], str] | None = field(default=None, repr=False)

    def matches(self, s: InetSock) -> bool:
        return self._eval(self.root, s, False) and self._eval(self.root, s, True)

    def _eval(self, node: Node, s: InetSock, kernel: bool) -> bool:
        if isinstance(node, And):
            return self._eval(node.left, s, kernel) and self._eval(node.right, s, kernel)
        if isinstance(node, Or):
            return self._eval(node.left, s, kernel) or self._eval(node.right, s, kernel)
        if isinstance(node, Not):
            return not self._eval(node.arg, s, kernel)
        what = node.what
        if what in ("src", "dst"):
            addr, port = (s.src, s.sport) if what == "src" else (s.dst, s.dport)
            match = _kernel_host_match if kernel else _user_host_match
            return any(match(h, addr, s.family, port) for h in node.hosts)
        if what == "dev":
            if not s.ifindex:
                return False
            if node.dev.isdigit():
                return s.ifindex == int(node.dev)
            return self.ifname is not None and self.ifname(s.netns, s.ifindex) == node.dev
        port = s.sport if what[0] == "s" else s.dport
        if what[1:] == "ge":
            return any(port >= h.port for h in node.hosts)
        return any(port <= h.port for h in node.hosts)


_C_INTEGER = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")


def _c_integer(text: str) -> int | None:
    """strtol(text, &end, 0) consuming all of ``text`` (get_integer()), else None."""
    if not _C_INTEGER.match(text):
        return None
    sign = -1 if text[0] == "-" else 1
    digits = text.lstrip("+-")
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    value *= sign
    return value if -(1 << 31) <= value < 1 << 31 else None


def _ipv4(text: str) -> bytes | None:
    """iproute2's get_addr_ipv4(): 1 to 4 parts, each strtoul(, 0) up to 255: "10" is 10.0.0.0."""
    out = bytearray(4)
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    for i, part in enumerate(parts):
        m = re.match(r"(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)", part)
        if not m or m.end() != len(part):
            return None
        digits = m.group(0)
        if digits[:2] in ("0x", "0X"):
            n = int(digits[2:] or "0", 16)
        else:
            n = int(digits, 8 if digits[0] == "0" else 10)
        if n > 255:
            return None
        out[i] = n
    return bytes(out)


def _prefix(text: str, family: int) -> HostCond | None:
    """iproute2's get_prefix_1(): ADDRESS[/LEN] (or any, all, default), no port."""
    if text in ("default", "any", "all"):
        return HostCond(family=family)
    addr_text, slash, length = text.partition("/")
    if family == AF_INET6 or (family == AF_UNSPEC and ":" in addr_text):
        try:
            addr, fam, full = socket.inet_pton(socket.AF_INET6, addr_text), AF_INET6, 128
        except OSError:
            return None
    elif family in (AF_INET, AF_UNSPEC) and ":" not in addr_text:
        four = _ipv4(addr_text)
        if four is None:
            return None
        addr, fam, full = four, AF_INET, 32
    else:
        return None
    bits = full
    if slash:
        n = int(length) if length.isdigit() else None
        if n is None:
            mask = _ipv4(length) if fam == AF_INET else None  # a dotted netmask
            n = _mask_bits(mask) if mask is not None else None
        if n is None or n > full:
            return None
        bits = n
    return HostCond(family=fam, addr=addr.ljust(16, b"\0"), bits=bits)


def _mask_bits(mask: bytes) -> int | None:
    value = int.from_bytes(mask, "big")
    bits = bin(value).count("1")
    return bits if value == (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF else None


class _Parser:
    def __init__(self, tokens: list[str], family: int, protos: Sequence[str]) -> None:
        self.tokens = tokens
        self.i = 0
        self.family = family  # ss's preferred_family (-4, -6), or set by inet:/inet6:
        self.asked_family = AF_UNSPEC
        self.protos = protos

    def error(self, message: str, index: int | None = None) -> FilterError:
        return FilterError(message, self.tokens, self.i if index is None else index)

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def parse(self) -> Node | None:
        if not self.tokens:
            return None
        node = self.exprlist()
        if self.i < len(self.tokens):
            raise self.error(f"unexpected {self.tokens[self.i]!r}: no '(' to close"
                             if self.tokens[self.i] == ")" else f"unexpected {self.tokens[self.i]!r}")
        return node

    def exprlist(self) -> Node:
        node = self.expr()
        while True:
            tok = self.peek()
            if tok is None or tok == ")":
                return node
            if tok in _OR:
                self.i += 1
                node = Or(node, self.expr())
            elif tok in _AND:
                self.i += 1
                node = And(node, self.expr())
            else:  # two expressions side by side: and
                node = And(node, self.expr())

    def expr(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise self.error("the filter ends where an expression should follow" if self.i
                             else "empty filter")
        start = self.i
        self.i += 1
        if tok == "(":
            node = self.exprlist()
            if self.peek() != ")":
                raise self.error(f"'(' at word {start + 1} is not closed", start)
            self.i += 1
            return node
        if tok in _NOT:
            return Not(self.expr())
        if tok in ("src", "dst"):
            self.optional_eq()
            return Cond(tok, self.hostcond(tok))
        if tok in ("sport", "dport"):
            op = _COMPARE.get(self.peek() or "", "")
            if op:
                self.i += 1
            else:
                op = "eq"
            hosts = self.hostcond(tok)
            side = tok[0]
            if op == "eq":
                return Cond("src" if side == "s" else "dst", hosts)
            if op == "ne":
                return Not(Cond("src" if side == "s" else "dst", hosts))
            if op in ("ge", "le"):
                return Cond(side + op, hosts)
            # > is not <=, < is not >=: as ss compiles them.
            return Not(Cond(side + ("le" if op == "gt" else "ge"), hosts))
        if tok == "dev":
            op = "eq"
            if self.peek() in _COMPARE:
                op = _COMPARE[self.tokens[self.i]]
                if op not in ("eq", "ne"):
                    raise self.error(f"dev takes = or !=, not {self.peek()!r}")
                self.i += 1
            name = self.value("a device name")
            dev = Cond("dev", dev=name)
            return Not(dev) if op == "ne" else dev
        if tok in _UNSUPPORTED:
            raise self.error(f"{tok!r} conditions are not supported (sport, dport, src, dst and dev are)",
                             start)
        if tok in _AND or tok in _OR or tok == ")":
            raise self.error(f"unexpected {tok!r}: an expression should come first", start)
        raise self.error(f"unknown condition {tok!r} (expected src, dst, sport, dport, dev, not or '(')",
                         start)

    def optional_eq(self) -> None:
        if self.peek() in ("=", "==", "eq"):
            self.i += 1

    def value(self, what: str) -> str:
        tok = self.peek()
        if tok is None:
            raise self.error(f"the filter ends where {what} should follow")
        if tok in _KEYWORDS:
            raise self.error(f"expected {what}, not {tok!r}")
        self.i += 1
        return tok

    def hostcond(self, kind: str) -> tuple[HostCond, ...]:
        """parse_hostcond(): the pattern after src/dst (or a port after sport/dport)."""
        is_port = kind in ("sport", "dport")
        text = self.value("a port" if is_port else "an address")
        index = self.i - 1
        family = self.family
        if text.startswith("inet:"):
            family, text = AF_INET, text[5:]
        elif text.startswith("inet6:"):
            family, text = AF_INET6, text[6:]
        elif text.startswith(("unix:", "link:", "netlink:", "vsock:")):
            raise self.error(f"{text.split(':')[0]} addresses are not supported: TCP and UDP only", index)
        addr = text
        port_text: str | None
        if is_port:
            port_text = text
        elif text.startswith("["):
            inner, bracket, after = text[1:].partition("]")
            if not bracket:
                raise self.error(f"no ']' in {text!r}", index)
            addr, port_text = inner, after
        elif text.startswith("*"):
            addr, port_text = "*", text[1:]
        elif text.count(":") > 1 and "." not in text.rpartition(":")[2] and "/" not in text:
            raise self.error(f"an IPv6 address goes in brackets, as [{text}] or [ADDRESS]:PORT", index)
        else:
            slash = text.find("/")
            colon = text.rfind(":", slash if slash >= 0 else 0)
            addr, port_text = (text[:colon], text[colon:]) if colon >= 0 else (text, None)
        port = -1
        if port_text:
            if port_text.startswith(":"):
                port_text = port_text[1:]
            if port_text and port_text != "*":
                port = self.port(port_text, index)
        hosts = [HostCond(port=port)]
        if not is_port and addr and addr != "*":
            prefix = _prefix(addr, family)
            if prefix is not None:
                hosts = [HostCond(port, prefix.family, prefix.addr, prefix.bits)]
            else:
                hosts = [HostCond(port, fam, a.ljust(16, b"\0"), len(a) * 8)
                         for fam, a in self.resolve(addr, family, index)]
        if family != AF_UNSPEC:
            self.asked_family = family
        return tuple(hosts)

    def port(self, text: str, index: int) -> int:
        number = _c_integer(text)
        if number is not None:
            return number
        found = set()
        for proto in self.protos:
            with contextlib.suppress(OSError):
                found.add(socket.getservbyname(text, proto))
        if len(found) > 1:
            raise self.error(f"ambiguous port {text!r}", index)
        if not found:
            raise self.error(f"{text!r} does not look like a port", index)
        return found.pop()

    def resolve(self, name: str, family: int, index: int) -> list[tuple[int, bytes]]:
        """get_dns_host(): every address of a host name."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]*[A-Za-z_][A-Za-z0-9_.-]*", name):
            raise self.error(f"an inet prefix is expected rather than {name!r}", index)
        try:
            infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise self.error(f"an inet prefix is expected rather than {name!r}", index) from None
        out = []
        for fam, _type, _proto, _name, sockaddr in infos:
            packed = socket.inet_pton(fam, str(sockaddr[0]))
            if (fam, packed) not in out:
                out.append((fam, packed))
        return out


def parse_filter(words: Sequence[str], family: int = AF_UNSPEC,
                 protos: Sequence[str] = ("tcp", "udp")) -> Filter | None:
    """
    Parse ss's filter expression from its command-line words (None if there are none).

    :param family: AF_INET or AF_INET6 when -4 or -6 chose one (addresses are read as it)
    :param protos: the protocols listed, whose service names a port name may be
    :raises FilterError: a bad expression, naming the token
    """
    parser = _Parser(tokenize(words), family, protos)
    root = parser.parse()
    if root is None:
        return None
    return Filter(root, parser.asked_family)
