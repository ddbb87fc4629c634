"""
A fuzz of ss's filter parser: thousands of expressions, random and mutated from the known
ones (tests/test_ssfilter.py), each parsed and run on the fixture sockets. The outcome is a
filter or a FilterError (one line, a pointer), never another exception, in bounded time.
Where ss is installed, a sample goes to ``ss -tan`` too, and drgn-ss must accept what it
accepts and refuse what it refuses, but for the documented differences.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from drgn_ss.commands.common import UsageError
from drgn_ss.commands.ss import _selection, build_parser
from drgn_ss.selection import filter
from drgn_ss.selection.errors import FilterError
from drgn_ss.selection.filter import parse_filter
from drgn_ss.sockets.record import AF_INET, AF_INET6

from tests.test_ssfilter import ALL, BAD, MATCHES

SEED = 20240616
#: Expressions the main fuzz makes, and how many of another run go to ss too.
COUNT = 3500
SS_COUNT = 400
#: Seconds: all of the main fuzz, one expression, all of the comparison with ss.
TOTAL_S = 60.0
EACH_S = 2.0
SS_TOTAL_S = 60.0

OPERATORS = ["and", "or", "not", "&", "&&", "|", "||", "!", "(", ")"]
COMPARISONS = ["=", "==", "eq", "!=", "ne", "neq", "<", "lt", ">", "gt", "<=", "le", "leq", ">=", "ge",
               "geq"]
CONDITIONS = ["src", "dst", "sport", "dport", "dev"]
#: Values, good and odd: C numbers, iproute2 prefixes, host and service names, words ss
#: refuses, characters Python reads as digits and C does not, non-UTF-8 bytes (as argv
#: arrives: surrogate escapes), controls.
VALUES = [
    ":22", "22", "0x16", "026", "08", "+22", "-1", "-0", "0", "65535", "65536", "100000",
    "2147483647", "2147483648", "4294967295", "4294967296", "1" * 30, "0" * 40 + "22", "0x", ":",
    "*", "*:22", "*:*x", ":ssh", "ssh", "http", ":nosuchservice", "[22]", "[22]x",
    "127.0.0.1", "127.0.0.1:22", "10.0.0.0/8", "10.0.0.0/255.0.0.0", "10.0.0.0/any", "10.0.0.0/+8",
    "10.0.0.0/0x8", "10.0.0.0/08", "10.0.0.0/33", "10.0.0.0/", "10.1", "10.0.0.", "1..2",
    "300.1.1.1", "2130706433", "0x7f000001", "0177.1", "-0.0.0.1", "any", "default", "all",
    "any/8", "[::1]", "[::1]:443", "[::1]443", "[::ffff:127.0.0.1]", "::/0", "::1", "[::1",
    "[1:2:3]", "[*x]:22", "[]", "inet:10.0.0.1", "inet:0/0", "inet6:[::1]", "inet6:::/0", "inet:",
    "inet6:", "unix:/run/x", "link:lo", "localhost", "lo", "eth0", "1", "0x2", "x" * 15,
    "x" * 16, "a/b", "a:b", "..", "²", "٣", "10.0.0.0/²", "1.2.3.4/٣", "\udcff", "\udc80x",
    ":\udcfe", "é", "\x1b[31m", "\n22", "\v", "\\", "\\ ", "", "fwmark", "autobound",
]
#: Values each condition takes (most of random_expression()'s, so that many parse and run).
GOOD = {
    "port": [":22", "22", "0x16", "026", "+22", "-1", "0", "443", ":443", "65536", "*", ":", "ssh", "[22]",
             "inet6:443", "inet:22"],
    "host": ["127.0.0.1", "127.0.0.1:22", "10.0.0.0/8", "127.0.0.0/255.0.0.0", "0/0", "10.1", "any",
             "2130706433", "[::1]", "[::1]:443", "::/0", "*:22", ":22", "[::ffff:127.0.0.1]",
             "inet:127.0.0.1", "inet6:[::1]", "localhost", "0.0.0.0/8", "-0.0.0.1"],
    "dev": ["lo", "eth0", "0", "1", "2", "0x2"],
}
STATE_WORDS = ["state", "exclude", "excl", "established", "listening", "bogus", "all"]
ODD_CHARS = ["\udcff", "\udc80", "²", "٣", "\x1b", "\n", "\t", " ", "\\", ":", "/", "[", "]", "*",
             ".", "0", "9", "x", "-", "+", "é", "\u200b", "\ufffd"]
SEEDS = [expr for expr, _ in MATCHES] + [expr for expr, _, _ in BAD]


def random_value(rng: random.Random) -> str:
    """A value word: one of VALUES, sometimes with a character changed, or a huge number."""
    roll = rng.random()
    if roll < 0.05:
        return rng.choice(["", "+", "-", "0x", "0"]) + "1" * rng.randrange(20, 6000)
    value = rng.choice(VALUES)
    if roll < 0.3 and value:
        i = rng.randrange(len(value) + 1)
        return value[:i] + rng.choice(ODD_CHARS) + value[i + rng.randrange(2):]
    return value


def random_word(rng: random.Random) -> str:
    """Any word: an operator, a comparison, a condition, a value, a state word or junk bytes."""
    pool = rng.choice([OPERATORS, COMPARISONS, CONDITIONS, VALUES, STATE_WORDS, None])
    if pool is None:
        raw = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 8)))
        return raw.decode(errors="surrogateescape")
    return rng.choice(pool) if pool is not VALUES else random_value(rng)


def random_expression(rng: random.Random, depth: int = 0) -> list[str]:
    """A grammatical expression with random conditions and values (and some odd ones)."""
    roll = rng.random()
    if depth < 4 and roll < 0.2:
        return ["(", *random_expression(rng, depth + 1), ")"]
    if depth < 4 and roll < 0.3:
        return [rng.choice(["not", "!"]), *random_expression(rng, depth + 1)]
    if depth < 4 and roll < 0.5:
        joint = rng.choice([[], ["and"], ["or"], ["&"], ["||"]])
        return [*random_expression(rng, depth + 1), *joint, *random_expression(rng, depth + 1)]
    what = rng.choice(CONDITIONS)
    if what in ("src", "dst"):
        op, good = rng.choice([[], ["="], ["eq"], ["!="]]), GOOD["host"]
    elif what == "dev":
        op, good = rng.choice([[], ["="], ["!="], ["<"]]), GOOD["dev"]
    else:
        op, good = rng.choice([[], [rng.choice(COMPARISONS)]]), GOOD["port"]
    return [what, *op, rng.choice(good) if rng.random() < 0.85 else random_value(rng)]


def deep(rng: random.Random) -> list[str]:
    """Nesting about ss's limit (9,995 "(" or "not"), or a long chain."""
    depth = rng.choice([1000, 4997, 4998, 9990, 9995, 9996, 12000])
    step = rng.choice([["not"], ["("], ["(", "not"], ["!", "("]])
    inner = random_expression(rng, 4)
    if rng.random() < 0.25:
        return inner + [rng.choice(["or", "and", "|"]), *inner] * rng.randrange(100, 3000)
    opening = step * (depth // len(step))
    return opening + inner + [")"] * opening.count("(")


def mutate(rng: random.Random, tokens: list[str]) -> list[str]:
    """One to three edits: insert, delete, duplicate, swap, replace, change a character, wrap."""
    tokens = list(tokens)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(9)
        i = rng.randrange(len(tokens) + 1)
        if kind == 0:
            tokens.insert(i, random_word(rng))
        elif kind == 1 and tokens:
            del tokens[min(i, len(tokens) - 1)]
        elif kind == 2 and tokens:
            j = min(i, len(tokens) - 1)
            tokens.insert(j, tokens[j])
        elif kind == 3 and len(tokens) > 1:
            a, b = rng.sample(range(len(tokens)), 2)
            tokens[a], tokens[b] = tokens[b], tokens[a]
        elif kind == 4:
            swaps = [j for j, t in enumerate(tokens) if t in OPERATORS or t in COMPARISONS]
            if swaps:
                tokens[rng.choice(swaps)] = rng.choice(OPERATORS + COMPARISONS)
        elif kind == 5 and tokens:
            tokens[min(i, len(tokens) - 1)] = random_value(rng)
        elif kind == 6 and tokens:
            j = min(i, len(tokens) - 1)
            k = rng.randrange(len(tokens[j]) + 1)
            tokens[j] = tokens[j][:k] + rng.choice(ODD_CHARS) + tokens[j][k + rng.randrange(2):]
        elif kind == 7:
            tokens = ["(", *tokens, ")"] if rng.random() < 0.5 else ["not", *tokens]
        else:
            tokens += [rng.choice(["and", "or", "|", "&&"]), *random_expression(rng)]
    return tokens


def as_words(rng: random.Random, tokens: list[str]) -> list[str]:
    """The tokens as argv words: one each, all in one (ss splits at spaces), or in a few."""
    roll = rng.random()
    if roll < 0.6 or len(tokens) > 200:
        return tokens
    if roll < 0.8:
        return [" ".join(tokens)]
    cut = rng.randrange(len(tokens) + 1)
    return [" ".join(tokens[:cut]), "\t".join(tokens[cut:])]


def expressions(seed: int, count: int, nul: bool = True) -> Iterator[list[str]]:
    """``count`` expressions (lists of argv words), the same for the same seed."""
    rng = random.Random(seed)
    for n in range(count):
        roll = rng.random()
        if n < len(SEEDS):
            tokens = SEEDS[n].split()  # each known expression once, unchanged
        elif roll < 0.45:
            tokens = mutate(rng, rng.choice(SEEDS).split())
        elif roll < 0.8:
            tokens = random_expression(rng)
        elif roll < 0.83:
            tokens = deep(rng)
        elif roll < 0.9:
            tokens = mutate(rng, random_expression(rng))
        else:
            tokens = [random_word(rng) for _ in range(rng.randrange(1, 8))]
        if nul and rng.random() < 0.01:
            tokens.append("\0")
        yield as_words(rng, tokens)


def fake_getaddrinfo(host: object, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
    """The resolver, offline and the same everywhere: localhost only."""
    if host == "localhost":
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def outcome(words: list[str], family: int, protos: tuple[str, ...]) -> str:
    """Parse and run on every fixture socket: "accept" or "refuse" (anything else raises)."""
    try:
        f = parse_filter(words, family, protos)
    except FilterError as e:
        assert "\n" not in str(e) and str(e).isprintable(), repr(str(e))
        assert len(e.pointer().split("\n")) == 2
        return "refuse"
    if f is not None:
        f.ifname = lambda netns, index: {1: "lo", 2: "eth0"}.get(index, f"if{index}")
        for s in ALL:
            f.matches(s)
    return "accept"


def test_fuzz_parses_and_runs_every_expression(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filter.socket, "getaddrinfo", fake_getaddrinfo)
    rng = random.Random(SEED)
    counts = {"accept": 0, "refuse": 0}
    slowest = (0.0, "")
    started = time.perf_counter()
    for words in expressions(SEED, COUNT):
        family = rng.choice([0, 0, AF_INET, AF_INET6])
        protos = rng.choice([("tcp",), ("udp",), ("tcp", "udp")])
        t0 = time.perf_counter()
        try:
            counts[outcome(words, family, protos)] += 1
        except Exception as e:  # what the fuzz is for: say which expression
            pytest.fail(f"{shown(words)} raised {e!r}")
        took = time.perf_counter() - t0
        slowest = max(slowest, (took, shown(words)))
    total = time.perf_counter() - started
    print(f"\nfuzz: {COUNT} expressions in {total:.1f} s ({counts['accept']} accepted, "
          f"{counts['refuse']} refused); slowest {slowest[0] * 1000:.0f} ms: {slowest[1]}")
    assert sum(counts.values()) == COUNT
    assert counts["accept"] > COUNT // 10 and counts["refuse"] > COUNT // 10
    assert slowest[0] < EACH_S, slowest
    assert total < TOTAL_S


def shown(words: list[str]) -> str:
    """The words for a message, cut if long."""
    text = repr(words)
    return text if len(text) < 200 else f"{text[:200]}... ({len(words)} words)"


def ss_accepts(words: list[str]) -> bool | None:
    """
    Whether ``ss -tan -- WORDS`` takes the filter (exit 0); None if it crashed or took over
    10 s (ss 6.1 takes minutes over 3,000 host names: each is a lookup, and more).
    """
    try:
        p = subprocess.run([b"ss", b"-tan", b"--", *map(os.fsencode, words)], capture_output=True,
                           timeout=10)
    except subprocess.TimeoutExpired:
        return None
    return None if p.returncode < 0 else p.returncode == 0


def drgn_ss_verdict(words: list[str]) -> tuple[bool, str, list[str]]:
    """
    What ``drgn-ss -tan -- WORDS`` makes of the filter, as the command does before it opens
    a kernel: (accepted, the error if not, names of devices the filter asks for).
    """
    try:
        selection = _selection(build_parser("drgn-ss", True).parse_args(["-tan", "--", *words]))
    except UsageError as e:
        return False, str(e), []
    devices = [c.dev for c in selection.expr.conditions() if c.what == "dev" and c.dev] \
        if selection.expr is not None else []
    return True, "", devices


def documented_difference(ours: tuple[bool, str, list[str]], host_devices: set[str]) -> str:
    """
    Why drgn-ss may answer otherwise than ss (docs/limitations.md), or "": it refuses
    fwmark, cgroup, autobound and the non-inet addresses; it accepts a device name ss has no
    interface of (names are the dumped kernel's, looked up later).
    """
    accepted, error, devices = ours
    if not accepted and "not supported" in error:
        return "unsupported"
    if accepted and any(name not in host_devices for name in devices):
        return "device name"  # ("if5", both a name and an index, is one too)
    return ""


def host_ss() -> str | None:
    """Why ss cannot be compared here, or None."""
    if shutil.which("ss") is None:
        return "no ss on this host"
    try:
        p = subprocess.run(["ss", "-tan"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"ss does not run: {e}"
    return None if p.returncode == 0 else f"ss -tan fails: {p.stderr!r}"


@pytest.mark.skipif(host_ss() is not None, reason=str(host_ss()))
def test_fuzz_accepts_what_ss_accepts() -> None:
    """
    A sample of the fuzz (without NULs, which argv cannot hold) given to the host's ss and
    to drgn-ss's option and filter parsing: the same verdict, or a documented difference.
    """
    host_devices = {name for _, name in socket.if_nameindex()}
    counts: dict[str, int] = {"agree": 0, "unsupported": 0, "device name": 0, "no answer from ss": 0}
    disagreements = []
    started = time.perf_counter()
    for words in expressions(SEED + 1, SS_COUNT, nul=False):
        theirs = ss_accepts(words)
        ours = drgn_ss_verdict(words)
        if theirs is None:
            counts["no answer from ss"] += 1
        elif theirs == ours[0]:
            counts["agree"] += 1
        elif why := documented_difference(ours, host_devices):
            counts[why] += 1
        else:
            disagreements.append(f"{shown(words)}: ss {'accepts' if theirs else 'refuses'}, drgn-ss "
                                 f"{'accepts' if ours[0] else 'refuses: ' + ours[1].splitlines()[0]}")
    total = time.perf_counter() - started
    print(f"\nss: {SS_COUNT} expressions in {total:.1f} s: {counts}")
    assert not disagreements, "\n".join(disagreements)
    assert counts["agree"] >= SS_COUNT * 0.9
    assert total < SS_TOTAL_S


def test_the_fuzz_is_the_same_every_run() -> None:
    assert list(expressions(SEED, 300)) == list(expressions(SEED, 300))
