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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Union

from drgn_ss.selection.addresses import (
    HostCond,
    address_hint,
    dns_host,
    get_integer,
    parse_device,
    parse_prefix,
    split_host,
)
from drgn_ss.selection.errors import AF_UNSPEC, FilterError, quote_text
from drgn_ss.sockets.record import AF_INET, AF_INET6, Socket
from drgn_ss.sockets.unix import AF_UNIX, ss_name

_INET = (AF_INET, AF_INET6)

__all__ = [
    "And", "Cond", "Filter", "Node", "Not", "Or", "Steps", "Test", "YYMAXDEPTH", "parse_filter", "tokenize",
]

#: bison's YYMAXDEPTH: ss's parser stack holds this many entries, less one.
YYMAXDEPTH = 10000

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
    """``not EXPRESSION``."""

    arg: Node


@dataclass(frozen=True)
class And:
    """``LEFT and RIGHT``."""

    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    """``LEFT or RIGHT``."""

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
    if family not in _INET:  # ss would compare the bits of a name's pointer: no match
        return False
    a = addr.ljust(16, b"\0")
    if _prefix_match(a, h.addr, h.bits):
        return True
    # "v4 mapped socket matches pure IPv4 rule".
    return h.family == AF_INET and family == AF_INET6 and addr[:12] == _MAPPED and _prefix_match(
        addr[12:].ljust(16, b"\0"), h.addr, h.bits)


def _unix_match(pattern: bytes, name: bytes) -> bool:
    """unix_match(): the name (ss's text of it, "" if none) against a glob, as fnmatch(3)
    with FNM_CASEFOLD."""
    global _fnmatch
    if _fnmatch is None:
        import ctypes  # only for a unix condition

        _fnmatch = ctypes.CDLL(None).fnmatch
    return _fnmatch(pattern, name, _FNM_CASEFOLD) == 0


_fnmatch: Callable[[bytes, bytes, int], int] | None = None
_FNM_CASEFOLD = 1 << 4


def _unix_test(cond: Cond) -> Test:
    """
    A src/dst condition on a unix pattern (``src /run/*.sock``): ss matches a unix socket's
    name (src), or the empty name it keeps for the peer (dst); a socket of another family
    (whose address ss would read as a name's pointer) never matches.
    """
    pattern = cond.hosts[0].addr
    if cond.what == "src":
        return lambda s: s.family == AF_UNIX and _unix_match(pattern, ss_name(s.src))  # b"": unbound
    return lambda s: s.family == AF_UNIX and _unix_match(pattern, b"")


def _kernel_host_match(h: HostCond, addr: bytes, family: int, port: int) -> bool:
    """inet_diag_bc_run()'s INET_DIAG_BC_S_COND/D_COND for one pattern."""
    if h.port != -1 and h.port != port:
        return False
    if h.family != AF_UNSPEC and h.family != family:
        return (family == AF_INET6 and h.family == AF_INET and addr[:12] == _MAPPED
                and _prefix_match(addr[12:].ljust(16, b"\0"), h.addr, h.bits))
    return not h.bits or _prefix_match(addr.ljust(16, b"\0"), h.addr, h.bits)


Test = Callable[[Socket], bool]
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


def _run(steps: Steps, s: Socket) -> bool:
    """Run compiled steps on a socket: from the first condition, each one's jump, to the end."""
    pc, end = 0, len(steps)
    while pc < end:
        test, yes, no = steps[pc]
        pc = yes if test(s) else no
    return pc == end


def _host_test(cond: Cond, kernel: bool) -> Test:
    """A src/dst condition: ss's own (any of the addresses) or the kernel's (the first)."""
    if cond.hosts[0].family == AF_UNIX:
        return _unix_test(cond)
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

    def matches(self, s: Socket) -> bool:
        """
        The kernel's bytecode passes the socket (if ss sent any: inet_diag runs it, for TCP
        and UDP), and then ss's own run.
        """
        return ((self._kernel is None or s[1] not in _INET or _run(self._kernel, s))  # s.family
                and _run(self._user, s))

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

        def test(s: Socket) -> bool:
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
                    raise self.error(f"dev takes = or !=, not {quote_text(self.tokens[self.i])}")
                self.i += 1
            dev = self.devcond()
            return Not(dev) if op == "ne" else dev
        if tok in _UNSUPPORTED:
            raise self.error(f"{tok!r} conditions are not supported (sport, dport, src, dst and dev are)",
                             start)
        if tok in _AND or tok in _OR or tok == ")":
            raise self.error(f"unexpected {tok!r}: an expression should come first", start)
        raise self.error(f"unknown condition {quote_text(tok)} (expected src, dst, sport, dport, dev, not "
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
        device = parse_device(name)
        if device is None:
            raise self.error(f"cannot parse device {quote_text(name)}", self.i - 1)
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
        elif text.startswith("unix:"):
            family, text = AF_UNIX, text[5:]
        elif text.startswith(("link:", "netlink:", "vsock:")) or family not in (AF_UNSPEC, *_INET, AF_UNIX):
            raise self.error(f"{text.split(':')[0]} addresses are not supported yet", index)
        if family == AF_UNIX:  # a glob of names, for a port condition too
            self.family = self.asked_family = AF_UNIX
            pattern = text.encode("utf-8", "surrogateescape")
            return (HostCond(-1, AF_UNIX, pattern, 8 * len(pattern)),)
        split = split_host(text, is_port)
        if split is None:
            raise self.error(f"no ']' in {quote_text(text)}", index)
        addr, port_text = split
        port = -1
        if port_text and not port_text.startswith("*"):
            port = self.port(port_text, index)
        hosts: tuple[HostCond, ...] = (HostCond(port=port),)
        if not is_port and addr and not addr.startswith("*"):
            prefix = parse_prefix(addr, family)
            if prefix is not None:
                hosts = (HostCond(port, prefix.family, prefix.addr, prefix.bits),)
            else:
                found = dns_host(addr, family)
                if not found:
                    raise self.error(f"an inet prefix is expected rather than {quote_text(addr)}"
                                     f"{address_hint(text, addr, family)}", index)
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
            raise self.error(f"ambiguous port {quote_text(text)}", index)
        if not found:
            raise self.error(f"{quote_text(text)} does not look like a port", index)
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
