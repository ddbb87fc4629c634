"""ss's filter expressions: parsing (ssfilter.y, parse_hostcond()) and matching on fixture
records. The kernel matrix compares whole filtered listings with ss's (FILTER_SETS)."""

from __future__ import annotations

import socket

import pytest
from drgn_ss.inet import AF_INET, AF_INET6, InetSock
from drgn_ss.ssfilter import And, Cond, FilterError, HostCond, Not, Or, parse_filter, tokenize


def sock(src: str, sport: int, dst: str, dport: int, ifindex: int = 0) -> InetSock:
    family = AF_INET6 if ":" in src else AF_INET
    pack = socket.inet_pton(family, src), socket.inet_pton(family, dst)
    return InetSock("tcp", family, 1, pack[0], sport, pack[1], dport, ifindex, None, 0, 0, 0, 0, 0,
                    4026531840, None, None, "full", 0)


V4 = sock("127.0.0.1", 22, "127.0.0.1", 40000)
V4_OUT = sock("10.1.2.3", 40001, "192.168.0.9", 443, ifindex=2)
V6 = sock("::1", 443, "::1", 50000)
MAPPED = sock("::ffff:127.0.0.1", 8080, "::ffff:127.0.0.1", 50001)
ALL = [V4, V4_OUT, V6, MAPPED]


def matching(expr: str, socks: list[InetSock] = ALL, family: int = 0) -> list[InetSock]:
    f = parse_filter(expr.split(), family)
    assert f is not None
    f.ifname = lambda netns, index: {1: "lo", 2: "eth0"}[index]
    return [s for s in socks if f.matches(s)]


def test_tokenize_splits_words_and_honours_backslashes() -> None:
    assert tokenize(["sport = :22", "or", "\tdport\\ x"]) == ["sport", "=", ":22", "or", "dport x"]
    assert tokenize(["", "  "]) == []


def test_and_or_group_from_the_left_without_precedence() -> None:
    """ss's grammar: exprlist '|' expr and exprlist '&' expr, so a or b and c is (a or b) and c."""
    f = parse_filter(["sport = :1 or sport = :2 and dport = :3"])  # one word: ss splits it
    assert f is not None
    a, b, c = (Cond(side, (HostCond(port=n),)) for side, n in (("src", 1), ("src", 2), ("dst", 3)))
    assert f.root == And(Or(a, b), c)
    f = parse_filter(["not sport = :1 dport = :3"])  # side by side: and; not binds to one
    assert f is not None and f.root == And(Not(a), c)
    assert matching("sport = :22 or sport = :443 and dport = :50000") == [V6]


@pytest.mark.parametrize("expr, expected", [
    ("sport = :22", [V4]),
    ("sport :22", [V4]),  # "=" may be left out
    ("sport == 22", [V4]),
    ("sport eq 0x16", [V4]),  # strtol base 0
    ("sport = 026", [V4]),  # octal, as strtol reads it
    ("sport != :22", [V4_OUT, V6, MAPPED]),
    ("sport > :443", [V4_OUT, MAPPED]),  # not <=
    ("sport gt 443", [V4_OUT, MAPPED]),
    ("sport >= :443", [V4_OUT, V6, MAPPED]),
    ("sport < 443", [V4]),
    ("sport le 443", [V4, V6]),
    ("dport ge 50000", [V6, MAPPED]),
    ("sport = *", ALL),
    ("src 127.0.0.1", [V4, MAPPED]),  # an IPv4 pattern matches IPv4-mapped addresses
    ("src 127.0.0.1:22", [V4]),
    ("src 127.0.0.0/8", [V4, MAPPED]),
    ("src 127.0.0.0/255.0.0.0", [V4, MAPPED]),
    ("src 127", []),  # get_addr_ipv4(): "127" is 127.0.0.0, a host (/32)
    ("src 127/8", [V4, MAPPED]),
    ("dst 192.168.0.0/16", [V4_OUT]),
    ("src [::1]", [V6]),
    ("src [::1]:443", [V6]),
    ("src [::ffff:127.0.0.1]", [MAPPED]),  # a mapped pattern only matches mapped sockets
    ("src :22", [V4]),
    ("src *:8080", [MAPPED]),
    ("src ::/0", [V6, MAPPED]),  # the kernel's rule: an IPv6 pattern, IPv6 sockets only
    ("src 0.0.0.0/0", [V4, V4_OUT, MAPPED]),  # ... and IPv4 with mapped ones
    ("src any", ALL),
    ("dev = eth0", [V4_OUT]),
    ("dev eth0", [V4_OUT]),
    ("dev 2", [V4_OUT]),
    ("dev != eth0", [V4, V6, MAPPED]),
    ("( sport = :22 or sport = :443 ) and not dst 127.0.0.1", [V6]),
    ("! sport = :22 && ! sport = :443 || dport = :40000", [V4, V4_OUT, MAPPED]),
])
def test_matches(expr: str, expected: list[InetSock]) -> None:
    assert matching(expr) == expected


def test_user_and_kernel_rules_both_apply() -> None:
    """
    ss shows a socket only if inet_diag's bytecode and ss's own run_ssfilter() both pass it:
    an IPv4 /8 pattern's bits match ::1's first byte in run_ssfilter() (it compares bits
    whatever the family), but never in the kernel, so the socket is out; under "not",
    run_ssfilter() is what keeps it (and ::ffff:127.0.0.1, whose first byte is 0 too) out.
    """
    assert matching("src 0.0.0.0/8") == []
    assert matching("not src 0.0.0.0/8") == [V4, V4_OUT]


def test_address_family_prefixes_restrict_the_listing() -> None:
    f = parse_filter(["src", "inet6:::/0"])
    assert f is not None and f.family == AF_INET6
    f = parse_filter(["src", "inet:10.0.0.0/8"])
    assert f is not None and f.family == AF_INET
    f = parse_filter(["sport", "=", ":22"])
    assert f is not None and f.family == 0
    assert parse_filter([]) is None


def test_service_names() -> None:
    try:
        port = socket.getservbyname("ssh", "tcp")
    except OSError:
        pytest.skip("no /etc/services entry for ssh")
    f = parse_filter(["dport", "=", ":ssh"])
    assert f is not None and f.root == Cond("dst", (HostCond(port=port),))


@pytest.mark.parametrize("expr, message, pointed", [
    ("sport >", "the filter ends where a port should follow", None),
    ("sport > and :22", "expected a port, not 'and'", "and"),
    ("( sport = :22", "'(' at word 1 is not closed", "("),
    ("sport = :22 )", "unexpected ')': no '(' to close", ")"),
    ("sport = :22 or", "the filter ends where an expression should follow", None),
    ("or sport = :22", "unexpected 'or': an expression should come first", "or"),
    ("bogus", "unknown condition 'bogus'", "bogus"),
    ("dport = :nosuchservice", "'nosuchservice' does not look like a port", ":nosuchservice"),
    ("src ::1", "an IPv6 address goes in brackets", "::1"),
    ("src 10.0.0.0/33", "an inet prefix is expected rather than '10.0.0.0/33'", "10.0.0.0/33"),
    ("src 300.1.1.1", "an inet prefix is expected rather than '300.1.1.1'", "300.1.1.1"),
    ("src [::1", "no ']' in '[::1'", "[::1"),
    ("src [::]/0", "'/0' does not look like a port", "[::]/0"),  # ss: a prefix is ::/0, unbracketed
    ("dev < lo", "dev takes = or !=, not '<'", "<"),
    ("sport = :22 and fwmark = 1", "'fwmark' conditions are not supported", "fwmark"),
    ("src unix:/run/x", "unix addresses are not supported", "unix:/run/x"),
])
def test_bad_expressions_point_at_the_token(expr: str, message: str, pointed: str | None) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(expr.split())
    assert message in str(info.value)
    line, marks = info.value.pointer().split("\n")
    assert line == "  " + expr
    start = len(marks) - len(marks.lstrip())
    if pointed is None:  # the end of the expression
        assert start == len(line) + 1 and marks.strip() == "^"
    else:
        assert line[start:start + len(marks.strip())] == pointed
