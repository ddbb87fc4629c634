"""ss's filter expressions: parsing (ssfilter.y, parse_hostcond()) and matching on fixture
records. The kernel matrix compares whole filtered listings with ss's (FILTER_SETS)."""

from __future__ import annotations

import socket

import pytest
from drgn_ss.selection.addresses import HostCond
from drgn_ss.selection.errors import FilterError
from drgn_ss.selection.filter import And, Cond, Filter, Not, Or, parse_filter, tokenize
from drgn_ss.sockets.record import AF_INET, AF_INET6, Socket


def sock(src: str, sport: int, dst: str, dport: int, ifindex: int = 0) -> Socket:
    family = AF_INET6 if ":" in src else AF_INET
    pack = socket.inet_pton(family, src), socket.inet_pton(family, dst)
    return Socket("tcp", family, 1, pack[0], sport, pack[1], dport, ifindex, None, 0, 0, 0, 0, 0,
                    4026531840, None, None, "full", 0)


V4 = sock("127.0.0.1", 22, "127.0.0.1", 40000)
V4_OUT = sock("10.1.2.3", 40001, "192.168.0.9", 443, ifindex=2)
V6 = sock("::1", 443, "::1", 50000)
MAPPED = sock("::ffff:127.0.0.1", 8080, "::ffff:127.0.0.1", 50001)
ALL = [V4, V4_OUT, V6, MAPPED]


def matching(expr: str, socks: list[Socket] = ALL, family: int = 0) -> list[Socket]:
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


#: Expressions and the fixture sockets each shows (the fuzz mutates them).
MATCHES = [
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
]


@pytest.mark.parametrize("expr, expected", MATCHES)
def test_matches(expr: str, expected: list[Socket]) -> None:
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


#: Bad expressions, ss's refusal (here, with the word pointed at).
BAD = [
    ("sport >", "the filter ends where a port should follow", None),
    ("sport > and :22", "expected a port, not 'and'", "and"),
    ("( sport = :22", "'(' at word 1 is not closed", "("),
    ("sport = :22 )", "unexpected ')': no '(' to close", ")"),
    ("sport = :22 or", "the filter ends where an expression should follow", None),
    ("or sport = :22", "unexpected 'or': an expression should come first", "or"),
    ("bogus", "unknown condition 'bogus'", "bogus"),
    ("dport = :nosuchservice", "'nosuchservice' does not look like a port", ":nosuchservice"),
    ("src ::1", "an inet prefix is expected rather than ':' (an IPv6 address goes in brackets: [::1])",
     "::1"),
    ("src 10.0.0.0/33", "an inet prefix is expected rather than '10.0.0.0/33'", "10.0.0.0/33"),
    ("src 300.1.1.1", "an inet prefix is expected rather than '300.1.1.1'", "300.1.1.1"),
    ("src [::1", "no ']' in '[::1'", "[::1"),
    ("src [::]/0", "'/0' does not look like a port", "[::]/0"),  # ss: a prefix is ::/0, unbracketed
    ("dev < lo", "dev takes = or !=, not '<'", "<"),
    ("sport = :22 and fwmark = 1", "'fwmark' conditions are not supported", "fwmark"),
    ("src link:eth0", "link addresses are not supported", "link:eth0"),
]


@pytest.mark.parametrize("expr, message, pointed", BAD)
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


def refused(words: list[str], family: int = 0) -> str:
    """The message parse_filter() refuses ``words`` with (it must refuse them)."""
    with pytest.raises(FilterError) as info:
        parse_filter(words, family)
    return str(info.value)


def test_an_address_family_carries_to_later_conditions() -> None:
    """
    parse_hostcond() sets ss's preferred family on inet:/inet6:, and later conditions read
    their address as that family only (ss 6.1: 'src inet6:::/0 or src 10.0.0.0/8' is
    refused: an inet prefix is expected rather than "10.0.0.0/8"); -4 and -6 set it first.
    """
    assert refused(["src inet6:::/0 or src 10.0.0.0/8"]) == (
        "an inet prefix is expected rather than '10.0.0.0/8' (addresses are read as IPv6 after "
        "inet6: or -6)")
    assert "rather than '127.0.0.1'" in refused(["src inet6:[::1] src 127.0.0.1:22"])
    assert "rather than '::1'" in refused(["src inet:10.0.0.1 or dst [::1]"])
    assert "rather than '10.0.0.1'" in refused(["dst 10.0.0.1"], AF_INET6)
    assert "rather than '::1'" in refused(["sport = inet:22 or src [::1]"])  # a port names it too
    # Before the inet6: condition, a bare address is either family; the listing shows the last named.
    f = parse_filter(["src 127.0.0.1 or src inet6:::/0 or src [::1]"])
    assert f is not None and f.family == AF_INET6
    f = parse_filter(["src inet6:::/0 or src inet:0/0"])
    assert f is not None and f.family == AF_INET
    assert matching("src inet:0/0 or src 10.0.0.0/8") == [V4, V4_OUT, MAPPED]


def test_numbers_are_read_as_c_reads_them() -> None:
    """strtol()/strtoul() base 0: ASCII digits only, a sign, leading C white space; ss's limits."""
    for port in ("+22", "\n22", "0x16", "026", "-0x0", "00000000000000000000000000000000000000022"):
        f = parse_filter(["sport", "=", port])
        assert f is not None and f.conditions()[0].hosts[0].port in (22, 0, 18), port
    for port in ("²", "٢٢", "22²", "0x", "08", "1_0", "2147483648", "1" + "0" * 5000, " 22"[1:] + "\x00"):
        if "\x00" in port:
            assert "NUL" in refused(["sport", "=", port])
        else:
            assert "does not look like a port" in refused(["sport", "=", port])
    assert refused(["sport", "=", "\udcff"]) == "'\\udcff' does not look like a port"  # non-UTF-8 byte
    for prefix in ("10.0.0.0/+8", "10.0.0.0/0x8", "10.0.0.0/-0", "10.0.0.0/any", "+10.0.0.1", "-0.0.0.1",
                   "10.\n1", "2130706433", "1.65535", "0177.1"):
        assert parse_filter(["src", prefix]) is not None, prefix
    for prefix in ("10.0.0.0/²", "1.2.3.4/٣", "10.0.0.0/08", "10.0.0.0/", "10.0.0.0/33", "any/8", "0x.1",
                   "1..2", "10.0.0.", "08.1.1.1", "0x7f000001", "1.2.3.4.5", "[1:2:3]", "\udcff",
                   "10.0.0.0/\udcff", "[\udcff::1]", "1" * 5000):
        assert "an inet prefix is expected" in refused(["src", prefix]), prefix
    f = parse_filter(["src", "2130706433"])  # gethostbyname2() reads it as inet_aton() does
    assert f is not None and f.conditions()[0].hosts[0].addr[:4] == bytes([127, 0, 0, 1])


def test_port_and_address_words_split_as_parse_hostcond() -> None:
    f = parse_filter(["sport = [22]x"])  # the port is what the brackets hold
    assert f is not None and f.conditions()[0].hosts == (HostCond(port=22),)
    for any_port in ("src *:*abc", "sport = *x", "sport = :", "src [*x]:22", "src \\"):
        f = parse_filter([any_port])
        assert f is not None and f.conditions()[0].hosts[0].port in (-1, 22), any_port
    assert matching("src [::1]443") == [V6]


def test_dev_takes_an_index_or_a_name_an_interface_can_have() -> None:
    """parse_devcond(): strtoul(, 0) up to UINT_MAX, else a name; ss compares indexes (0: unbound)."""
    assert matching("dev 0") == [V4, V6, MAPPED]
    assert matching("dev 0x2") == [V4_OUT]
    assert matching("dev != 0") == [V4_OUT]
    for bad in ("²", "-1", "08", "4294967296", "\\", "a/b", ":b", "..", "x" * 16, "é" * 8):
        assert refused(["dev", bad]).startswith("cannot parse device"), bad
    assert parse_filter(["dev", "x" * 15]) is not None


def test_the_kernel_pass_as_ss_compiles_it() -> None:
    """
    The bytecode holds a port bound in 16 bits (sport < 65536 is not sport >= 0: nothing);
    an expression with dev is not compiled, so ss's own pass alone decides (::1's first
    byte matches 0.0.0.0/8 there). Both checked against ss 6.1 on listeners.
    """
    assert matching("sport < 65536") == []
    assert matching("sport >= 65536") == []
    assert matching("sport < 100000") == [V4, V6, MAPPED]  # kernel: sport < 34464; ss: true
    assert matching("sport > -1") == []
    assert matching("dev 0 and src 0.0.0.0/8") == [V6, MAPPED]
    # A host name's addresses: the bytecode repeats the first one's (ss fills each entry from
    # the list's head), ss's own pass takes any.
    v6, v4 = (HostCond(family=f, addr=socket.inet_pton(f, a).ljust(16, b"\0"), bits=b)
              for f, a, b in ((AF_INET6, "::1", 128), (AF_INET, "127.0.0.1", 32)))
    f = Filter(Cond("src", (v6, v4)))
    assert [s for s in ALL if f.matches(s)] == [V6]


def nested(depth: int, inner: str = "sport = :22", step: str = "not") -> list[str]:
    opening = step.split() * depth
    return opening + inner.split() + [")"] * opening.count("(")


def test_deep_expressions_parse_and_run_to_bison_s_limit() -> None:
    """
    ss's bison stack holds 9,999 entries: 9,995 ( or not before a condition (three entries,
    and bison's first state), or 4,997 "( not" (ss 6.1 on the host, bisected). Deeper is
    refused; up to there, parsing and evaluation take no recursion.
    """
    for depth, step in ((9995, "not"), (9995, "("), (4997, "( not"), (3000, "( sport = :1 or")):
        f = parse_filter(nested(depth, step=step))
        assert f is not None
        assert len([s for s in ALL if f.matches(s)]) in (1, 3, 4)
    for depth, step in ((9996, "not"), (9996, "("), (4998, "( not"), (3332, "( sport = :1 or")):
        assert "nested too deeply for ss's parser (memory exhausted" in refused(nested(depth, step=step))
    # And and or chains take no depth: ss's exprlist is left-recursive.
    chain = ["sport = :1"] + ["or sport = :22"] * 20000
    f = parse_filter(chain)
    assert f is not None and [s for s in ALL if f.matches(s)] == [V4]
    f = parse_filter(["sport = :22"] * 20000)
    assert f is not None and [s for s in ALL if f.matches(s)] == [V4]


def test_a_long_expression_s_pointer_is_cut_around_the_word() -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(["sport = :22 or"] * 1000 + ["sport = :nosuch\x1b"] + ["or sport = :1"] * 100)
    line, marks = info.value.pointer().split("\n")
    assert len(line) < 120 and line.startswith("  ... ") and line.endswith(" ...")
    start = len(marks) - len(marks.lstrip())
    assert line[start:start + len(marks.strip())] == ":nosuch\\x1b"
    assert str(info.value) == "'nosuch\\x1b' does not look like a port"


def test_dev_names_as_ll_name_to_index_reads_them() -> None:
    """ss 6.1 takes "dev lo:1" (the kernel drops an alias) and "dev if2" (index 2, by sscanf)."""
    assert matching("dev eth0:1") == [V4_OUT]
    assert matching("dev if2") == matching("dev if2junk") == [V4_OUT]
    assert matching("dev if0x2") == []  # sscanf's %u is decimal: if0, no index; a name
    assert refused(["dev :1"]).startswith("cannot parse device")
