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

Numbers are read as ss reads them, with C's strtol()/strtoul() (base 0, ASCII digits only,
leading C white space, a sign), addresses with iproute2's get_prefix_1() and, failing that,
gethostbyname2(). ss's parser carries one thing from a condition to the next: the address
family. ``-4``/``-6`` set it first; an ``inet:`` or ``inet6:`` address sets it for every
later condition, which reads its address as that family only (after ``src inet6:::/0``,
``src 10.0.0.0/8`` is refused), and the listing shows only the last one named. ss's parser
is bison's, whose stack holds 10,000 entries: an expression nested deeper (some 9,995
``(`` or ``not``) is refused, as ss refuses it ("memory exhausted"). Long ``and``/``or``
chains take no stack. Nothing here recurses: parsing keeps its own stack, and an expression
runs as a list of conditions with jumps, as ss compiles it to inet_diag bytecode.

ss filters twice: the kernel runs the expression compiled to inet_diag bytecode, then ss
runs it again on what comes back, and shows a socket only if both pass. They differ for
addresses of the other family: the kernel's condition never matches a socket of another
family (but an IPv4 condition matches IPv4-mapped IPv6 addresses), while ss's own compares
the bits of the two addresses whatever their families; for port bounds (the bytecode holds
16 bits: ``sport < 65536`` is ``sport < 0`` there); and for host names (the bytecode has the
first address only). An expression with a ``dev`` condition is not compiled at all (ss
cannot), so ss's own evaluation alone decides. :meth:`Filter.matches` is both.
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

#: bison's YYMAXDEPTH: ss's parser stack holds this many entries, less one.
YYMAXDEPTH = 10000
#: Characters of a token shown in an error message; the pointer line's width around the token.
_QUOTE_LIMIT = 40
_POINTER_WIDTH = 100


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
        """
        The expression on one line and a line of ``^`` under the token (or its end), indented;
        a long expression is cut to the part around the token, and characters that do not
        print are shown escaped, as in the message.
        """
        shown = [printable(t) for t in self.tokens]
        line = " ".join(shown)
        if self.index < len(shown):
            start = len(" ".join(shown[: self.index])) + (1 if self.index > 0 else 0)
            width = max(len(shown[self.index]), 1)
        else:
            start, width = len(line) + (1 if line else 0), 1
        width = min(width, _POINTER_WIDTH // 2)
        if len(line) > _POINTER_WIDTH:
            left = max(0, start - _POINTER_WIDTH // 2)
            right = left + _POINTER_WIDTH
            head = "... " if left > 0 else ""
            line = head + line[left:right] + (" ..." if right < len(line) else "")
            start += len(head) - left
        return f"  {line}\n  {' ' * start}{'^' * width}"


def printable(text: str) -> str:
    """``text`` with each character that does not print (controls, non-UTF-8 bytes) escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _quoted(text: str) -> str:
    """``text`` quoted for a message, as repr() does (one printable line), cut if long."""
    if len(text) > _QUOTE_LIMIT:
        return repr(text[:_QUOTE_LIMIT]) + "..."
    return repr(text)


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
INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1
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


def _prefix(text: str, family: int) -> HostCond | None:
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


def _dns_host(name: str, family: int) -> list[tuple[int, bytes]]:
    """ss's get_dns_host(): a host name's addresses, IPv4 first when no family is asked for."""
    families = (AF_INET, AF_INET6) if family == AF_UNSPEC else (family,)
    return [(fam, addr) for fam in families for addr in _gethostbyname2(name, fam)]


def _split_host(text: str, is_port: bool) -> tuple[str, str | None] | None:
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


def _device(name: str) -> tuple[str, int] | None:
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


def _hint(text: str, addr: str, family: int) -> str:
    """Why ``addr`` (of the word ``text``) is no address, when that is not plain."""
    if family != AF_UNSPEC and _prefix(addr, AF_UNSPEC) is not None:
        name = "IPv6" if family == AF_INET6 else "IPv4"
        prefix = "inet6:" if family == AF_INET6 else "inet:"
        return f" (addresses are read as {name} after {prefix} or -{name[-1]})"
    if text[:1] not in ("[", "*") and text.count(":") > 1 and _prefix(text, AF_UNSPEC) is not None:
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


@dataclass(frozen=True)
class Cond:
    """
    A leaf: ``what`` is "src", "dst" (address and port), "sge"/"sle"/"dge"/"dle" (port
    bounds) or "dev"; ``hosts`` are alternatives (a host name's addresses); a ``dev``
    condition has an interface index (else -1) or a name (else ""), or both ("if5").
    """

    what: str
    hosts: tuple[HostCond, ...] = ()
    dev: str = ""
    ifindex: int = -1


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


Test = Callable[[InetSock], bool]
#: A compiled expression: conditions with the step to go to when each passes and when it fails;
#: past the end, len(steps) is "show" and len(steps) + 1 "do not show".
Steps = list[tuple[Test, int, int]]


def _compile(root: Node, test: Callable[[Cond], Test]) -> Steps:
    """
    The expression as conditions with jumps (as ss's ssfilter_bytecompile() makes inet_diag
    bytecode, and without recursion): ``not`` swaps a condition's jumps, ``and``/``or`` make
    the left side's jump into the right side's first condition. Every jump goes forward.
    """
    accept, reject = -1, -2  # labels, like the ones bound to a right side's first step
    labels = 0
    steps: list[tuple[Cond, int, int]] = []
    where: dict[int, int] = {}
    work: list[tuple[Node, int, int, int | None]] = [(root, accept, reject, None)]
    while work:
        node, yes, no, label = work.pop()
        if label is not None:
            where[label] = len(steps)  # the next condition made is this node's first
        if isinstance(node, Not):
            work.append((node.arg, no, yes, None))
        elif isinstance(node, (And, Or)):
            right, labels = labels, labels + 1
            work.append((node.right, yes, no, right))
            if isinstance(node, And):
                work.append((node.left, right, no, None))
            else:
                work.append((node.left, yes, right, None))
        else:
            steps.append((node, yes, no))
    end = len(steps)
    where[accept], where[reject] = end, end + 1
    return [(test(cond), where[yes], where[no]) for cond, yes, no in steps]


def _run(steps: Steps, s: InetSock) -> bool:
    """Run compiled steps on a socket: from the first condition, each one's jump, to the end."""
    pc, end = 0, len(steps)
    while pc < end:
        test, yes, no = steps[pc]
        pc = yes if test(s) else no
    return pc == end


def _host_test(cond: Cond, kernel: bool) -> Test:
    """A src/dst condition: ss's own (any of the addresses) or the kernel's (the first)."""
    local = cond.what == "src"
    if kernel:
        first = cond.hosts[0]
        if local:
            return lambda s: _kernel_host_match(first, s.src, s.family, s.sport)
        return lambda s: _kernel_host_match(first, s.dst, s.family, s.dport)
    hosts = cond.hosts
    if local:
        return lambda s: any(_user_host_match(h, s.src, s.family, s.sport) for h in hosts)
    return lambda s: any(_user_host_match(h, s.dst, s.family, s.dport) for h in hosts)


def _port_test(cond: Cond, kernel: bool) -> Test:
    """A port bound: sge, sle, dge, dle; the kernel's bytecode holds the port in 16 bits."""
    bound = cond.hosts[0].port & 0xFFFF if kernel else cond.hosts[0].port
    if cond.what == "sge":
        return lambda s: s.sport >= bound
    if cond.what == "sle":
        return lambda s: s.sport <= bound
    if cond.what == "dge":
        return lambda s: s.dport >= bound
    return lambda s: s.dport <= bound


@dataclass(eq=False)
class Filter:
    """A parsed expression; :meth:`matches` decides a socket as ss does."""

    root: Node = field(repr=False)
    #: The address family the expression asked for (``inet:``/``inet6:``), else AF_UNSPEC:
    #: ss then shows only that family.
    family: int = AF_UNSPEC
    #: Interface names, for ``dev`` (netns inode, ifindex) -> name; set before matching.
    ifname: Callable[[int, int], str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._user = _compile(self.root, lambda cond: self._test(cond, False))
        self._kernel: Steps | None = _compile(self.root, lambda cond: self._test(cond, True))
        if any(cond.what == "dev" for cond in self.conditions()):
            self._kernel = None  # ss cannot compile dev to bytecode: it sends none

    def conditions(self) -> list[Cond]:
        """The expression's conditions, left to right."""
        out, work = [], [self.root]
        while work:
            node = work.pop()
            if isinstance(node, Not):
                work.append(node.arg)
            elif isinstance(node, (And, Or)):
                work += (node.right, node.left)
            else:
                out.append(node)
        return out

    def matches(self, s: InetSock) -> bool:
        """The kernel's bytecode passes the socket (if ss sent any), and then ss's own run."""
        return (self._kernel is None or _run(self._kernel, s)) and _run(self._user, s)

    def _test(self, cond: Cond, kernel: bool) -> Test:
        if cond.what in ("src", "dst"):
            return _host_test(cond, kernel)
        if cond.what == "dev":
            return self._dev_test(cond)
        return _port_test(cond, kernel)

    def _dev_test(self, cond: Cond) -> Test:
        """ss compares interface indexes (0: not bound); a name, in the socket's namespace."""
        index, name = cond.ifindex, cond.dev
        if not name:
            return lambda s: s.ifindex == index

        def test(s: InetSock) -> bool:
            if s.ifindex == index:
                return True
            return bool(s.ifindex) and self.ifname is not None and self.ifname(s.netns, s.ifindex) == name

        return test


#: What the parser's stack holds, as bison's does: "(", "!", "list" (an exprlist: the
#: expressions so far, joined), "|" or "&"; with the token's index and, for a list, its node.
_Entry = tuple[str, int, Union[Node, None]]


class _Parser:
    """
    ssfilter.y's grammar without recursion: a shift-reduce parser whose stack holds what
    bison's holds, so that it refuses an expression where ss's parser runs out of stack.
    """

    def __init__(self, tokens: list[str], family: int, protos: Sequence[str]) -> None:
        self.tokens = tokens
        self.i = 0
        self.family = family  # ss's preferred_family: -4, -6, then each inet:/inet6:
        self.asked_family = AF_UNSPEC
        self.protos = protos
        self.stack: list[_Entry] = []

    def error(self, message: str, index: int | None = None) -> FilterError:
        return FilterError(message, self.tokens, self.i if index is None else index)

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def push(self, entry: _Entry) -> None:
        """Push onto the stack, as bison pushes a token or what it reduced."""
        self.stack.append(entry)
        self.check_depth(0, entry[1])

    def check_depth(self, above: int, index: int) -> None:
        """
        Refuse where bison's stack would be full, with ``above`` more entries on ours (it also
        holds its first state, and fails as it fills its last entry).
        """
        if len(self.stack) + above + 1 >= YYMAXDEPTH:
            raise self.error("the expression is nested too deeply for ss's parser (memory exhausted: "
                             f"its stack holds {YYMAXDEPTH - 1} entries)", index)

    def parse(self) -> Node | None:
        """The expression's tree; None for no tokens."""
        if not self.tokens:
            return None
        for index, token in enumerate(self.tokens):
            if "\0" in token:
                raise self.error("a NUL character in the filter", index)
        while True:
            node = self.expr_start()
            if node is not None:
                whole = self.reduce(node)
                if whole is not None:
                    return whole

    def expr_start(self) -> Node | None:
        """Where an expression starts: push ``(`` or ``not``, or read a whole condition."""
        tok = self.peek()
        if tok is None:
            raise self.error("the filter ends where an expression should follow")
        start = self.i
        if tok == "(" or tok in _NOT:
            self.i += 1
            self.push(("(" if tok == "(" else "!", start, None))
            return None
        node = self.condition()
        self.check_depth(3, start)  # SPORT eq HOSTCOND: bison holds all three before reducing
        return node

    def reduce(self, node: Node) -> Node | None:
        """
        An expression is complete: apply the ``not``s before it, join it to the list before
        it, and read on, closing parentheses. The whole expression at the end of the filter;
        None where another expression starts.
        """
        stack = self.stack
        while True:
            while stack and stack[-1][0] == "!":
                stack.pop()
                node = Not(node)
            if stack and stack[-1][0] in ("|", "&"):
                op = stack.pop()[0]
                left = stack.pop()[2]
                assert left is not None
                node = Or(left, node) if op == "|" else And(left, node)
            elif stack and stack[-1][0] == "list":
                left = stack.pop()[2]
                assert left is not None
                node = And(left, node)
            tok = self.peek()
            if tok == ")":
                if not stack:
                    raise self.error("unexpected ')': no '(' to close")
                stack.pop()
                self.i += 1
                continue  # the list in parentheses is an expression
            if tok is None:
                if stack:
                    raise self.error(f"'(' at word {stack[-1][1] + 1} is not closed", stack[-1][1])
                return node
            self.push(("list", self.i, node))
            if tok in _OR or tok in _AND:
                self.push(("|" if tok in _OR else "&", self.i, None))
                self.i += 1
            return None

    def condition(self) -> Node:
        """A condition, whole: src/dst/sport/dport/dev, its operator and its value."""
        tok = self.tokens[self.i]
        start = self.i
        self.i += 1
        if tok in ("src", "dst"):
            if self.peek() in ("=", "==", "eq"):
                self.i += 1
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
                    raise self.error(f"dev takes = or !=, not {_quoted(self.tokens[self.i])}")
                self.i += 1
            dev = self.devcond()
            return Not(dev) if op == "ne" else dev
        if tok in _UNSUPPORTED:
            raise self.error(f"{tok!r} conditions are not supported (sport, dport, src, dst and dev are)",
                             start)
        if tok in _AND or tok in _OR or tok == ")":
            raise self.error(f"unexpected {tok!r}: an expression should come first", start)
        raise self.error(f"unknown condition {_quoted(tok)} (expected src, dst, sport, dport, dev, not "
                         "or '(')", start)

    def value(self, what: str) -> str:
        tok = self.peek()
        if tok is None:
            raise self.error(f"the filter ends where {what} should follow")
        if tok in _KEYWORDS:
            raise self.error(f"expected {what}, not {tok!r}")
        self.i += 1
        return tok

    def devcond(self) -> Cond:
        """parse_devcond(): an interface index or name."""
        name = self.value("a device name")
        device = _device(name)
        if device is None:
            raise self.error(f"cannot parse device {_quoted(name)}", self.i - 1)
        return Cond("dev", dev=device[0], ifindex=device[1])

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
        split = _split_host(text, is_port)
        if split is None:
            raise self.error(f"no ']' in {_quoted(text)}", index)
        addr, port_text = split
        port = -1
        if port_text and not port_text.startswith("*"):
            port = self.port(port_text, index)
        hosts: tuple[HostCond, ...] = (HostCond(port=port),)
        if not is_port and addr and not addr.startswith("*"):
            prefix = _prefix(addr, family)
            if prefix is not None:
                hosts = (HostCond(port, prefix.family, prefix.addr, prefix.bits),)
            else:
                found = _dns_host(addr, family)
                if not found:
                    raise self.error(f"an inet prefix is expected rather than {_quoted(addr)}"
                                     f"{_hint(text, addr, family)}", index)
                hosts = tuple(HostCond(port, fam, a.ljust(16, b"\0"), len(a) * 8) for fam, a in found)
        if family != AF_UNSPEC:  # filter_af_set(): ss's preferred family from now on
            self.family = self.asked_family = family
        return hosts

    def port(self, text: str, index: int) -> int:
        """A port number (get_integer()), or a service name of one of the listed protocols."""
        number = get_integer(text)
        if number is not None:
            return number
        found = set()
        for proto in self.protos:
            with contextlib.suppress(OSError, ValueError):  # ValueError: not UTF-8
                found.add(socket.getservbyname(text, proto))
        if len(found) > 1:
            raise self.error(f"ambiguous port {_quoted(text)}", index)
        if not found:
            raise self.error(f"{_quoted(text)} does not look like a port", index)
        return found.pop()


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
