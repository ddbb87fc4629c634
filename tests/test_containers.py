"""
:mod:`drgn_ss.containers`: every layout in :data:`tests.container_paths.VECTORS` says
exactly what it should, the malformed say no container, and no string (mutated vectors,
random components, random text) makes the parser raise or put a character outside
``[A-Za-z0-9_.@:,()=-]`` in the text.
"""

from __future__ import annotations

import random
import re
import time

import pytest
from drgn_ss.containers import MAX_PATH, Container, container_fields, container_of, container_text

from tests.container_paths import D1, K2, MALFORMED, U2, U5, VECTORS

TEXT = re.compile(r"[A-Za-z0-9_.@:,()=-]*")
HEX64 = re.compile(r"[0-9a-f]{64}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LXC_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
UNIT = re.compile(r"[A-Za-z0-9:_.@-]{1,255}")


def check(path: str) -> Container | None:
    """``container_of(path)``, its text and fields checked against what any result may be."""
    c = container_of(path)
    if c is None:
        return None
    text = container_text(c)
    assert TEXT.fullmatch(text), (path, text)
    assert text, path
    assert container_fields(c) == c._asdict()
    if c.runtime is not None:
        assert c.runtime in ("docker", "containerd", "crio", "podman", "lxc") and c.unit is None
        assert (LXC_NAME if c.runtime == "lxc" else HEX64).fullmatch(c.id or ""), (path, c)
    else:
        assert c.id is None
    if c.pod_uid is not None:
        assert UUID.fullmatch(c.pod_uid) and c.qos in ("guaranteed", "burstable", "besteffort")
        assert c.unit is None
    else:
        assert c.qos is None
    if c.unit is not None:
        assert UNIT.fullmatch(c.unit) and c.unit.endswith((".service", ".scope"))
    else:
        assert c.runtime is not None or c.pod_uid is not None
    return c


@pytest.mark.parametrize("path,expected", VECTORS, ids=[p for p, _ in VECTORS])
def test_vectors(path: str, expected: Container | None) -> None:
    assert check(path) == expected


def test_vectors_are_many_distinct_and_creatable() -> None:
    paths = [p for p, _ in VECTORS]
    assert len(paths) >= 30
    assert len(set(paths)) == len(paths)
    for path in paths:
        assert path.startswith("/") and "\n" not in path and "\0" not in path
        if path != "/":
            assert all(part not in ("", ".", "..") and len(part) <= 255 for part in path[1:].split("/"))
    runtimes = {c.runtime for _, c in VECTORS if c is not None}
    assert runtimes == {"docker", "containerd", "crio", "podman", "lxc", None}
    assert {c.qos for _, c in VECTORS if c is not None} >= {"guaranteed", "burstable", "besteffort"}


@pytest.mark.parametrize("path,expected", MALFORMED, ids=[repr(p[:80]) for p, _ in MALFORMED])
def test_malformed(path: str, expected: Container | None) -> None:
    c = check(path)
    assert c == expected
    assert c is None or (c.runtime is None and c.id is None and c.pod_uid is None)


@pytest.mark.parametrize("path,text", [
    (f"/system.slice/docker-{D1}.scope", "container:(docker,5ca1ab1e5ca1)"),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U2.replace('-', '_')}.slice/"
     f"cri-containerd-{K2}.scope", f"container:(containerd,b01dfaceb01d,pod={U2})"),
    ("/lxc.payload.web01/system.slice/nginx.service", "container:(lxc,web01)"),
    ("/lxc/a-rather-long.container_name", "container:(lxc,a-rather-long.container_name)"),
    (f"/kubepods/burstable/pod{U5}", f"pod:({U5},qos=burstable)"),
    ("/user.slice/user-1000.slice/user@1000.service", "unit:user@1000.service"),
    ("/init.scope", "unit:init.scope"),
])
def test_text(path: str, text: str) -> None:
    c = container_of(path)
    assert c is not None and container_text(c) == text


def test_fields() -> None:
    c = container_of(f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U2.replace('-', '_')}"
                     f".slice/cri-containerd-{K2}.scope")
    assert c is not None
    assert container_fields(c) == {"runtime": "containerd", "id": K2, "pod_uid": U2, "qos": "burstable",
                                   "unit": None}
    c = container_of("/system.slice/nginx.service")
    assert c is not None
    assert container_fields(c) == {"runtime": None, "id": None, "pod_uid": None, "qos": None,
                                   "unit": "nginx.service"}
    assert list(container_fields(Container(None, None, None, None, None))) == [
        "runtime", "id", "pod_uid", "qos", "unit"]


def test_text_of_nothing_and_of_a_forged_container() -> None:
    assert container_text(Container(None, None, None, None, None)) == ""
    assert container_text(Container("docker", "\x1b[31m" + "a" * 64, None, None, None)) == ""
    assert container_text(Container(None, None, None, None, "x).service")) == ""


def test_a_container_with_odd_cgroups_below_it() -> None:
    """What a container makes inside itself does not undo it; only a better container does."""
    assert container_of(f"/docker/{D1}/\x1b[31m") == Container("docker", D1, None, None, None)
    assert container_of(f"/docker/{D1}/init.scope") == Container("docker", D1, None, None, None)
    pod = Container(None, None, U5, "burstable", None)
    assert container_of(f"/kubepods/burstable/pod{U5}/\x1b[31m") == pod


def test_non_strings_say_nothing() -> None:
    for value in (None, b"/docker/" + D1.encode(), 42, ["/"]):
        assert container_of(value) is None  # type: ignore[arg-type]


def test_longest_path() -> None:
    """A path of MAX_PATH characters parses (its overlong component matches nothing); one more does not."""
    tail = f"/docker/{D1}"
    path = "/" + "x" * (MAX_PATH - len(tail) - 1) + tail
    assert len(path) == MAX_PATH
    assert container_of(path) == Container("docker", D1, None, None, None)
    assert container_of("/x" + path) is None


U2_ = U2.replace("-", "_")
ALPHABET = ("abcdef0123456789ABCDEFxyz-_.@:/ " + "\x00\x1b\n\r\t\x7f" + "\u00e9\u0663\uff15\udcff\ud800"
            + "()=,\\[]%")
TOKENS = [
    "docker", "moby", "default", "k8s.io", "kubepods", "burstable", "besteffort", "guaranteed", "lxc",
    "kubepods.slice", "kubepods-burstable.slice", "kubepods-besteffort.slice", "system.slice",
    "libpod_parent", "lxc.payload.a", "lxc.monitor.b", "pod" + U5, f"kubepods-pod{U2_}.slice",
    f"kubepods-burstable-pod{U2_}.slice", D1, f"docker-{D1}.scope", f"crio-{D1}",
    f"libpod-conmon-{D1}.scope", "nginx.service", "user@1000.service", "init.scope", "", ".", "..",
    "\x1b[31m", "\udcff", "a" * 300,
]


def mutate(rng: random.Random, path: str) -> str:
    """``path`` with a few random edits: characters, components, case, cuts, joins."""
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(path) + 1)
        if op == 0:
            path = path[:pos] + rng.choice(ALPHABET) + path[pos + 1:]
        elif op == 1:
            path = path[:pos] + rng.choice(ALPHABET) + path[pos:]
        elif op == 2:
            path = path[:pos] + path[pos + 1:]
        elif op == 3:
            path = path[:pos]
        elif op == 4:
            path = path[:pos].upper() + path[pos:]
        else:
            parts = path.split("/")
            i, j = rng.randrange(len(parts)), rng.randrange(len(parts))
            if op == 5:
                parts[i], parts[j] = parts[j], parts[i]
            elif op == 6:
                parts.insert(i, parts[j])
            else:
                parts.insert(i, rng.choice(TOKENS))
            path = "/".join(parts)
    return path


def fuzzed(rng: random.Random) -> list[str]:
    """Mutated vectors, paths of random tokens, random text."""
    vectors = [p for p, _ in VECTORS] + [p for p, _ in MALFORMED if len(p) < 400]
    out = [mutate(rng, rng.choice(vectors)) for _ in range(3000)]
    out += ["/" + "/".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 8))) for _ in range(1500)]
    out += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 200))) for _ in range(1000)]
    out += [rng.choice(vectors) + "/" + rng.choice(vectors)[1:] for _ in range(500)]
    return out


def test_fuzz_never_raises_and_text_stays_clean() -> None:
    rng = random.Random(0x5CA1AB1E)
    found = 0
    for path in fuzzed(rng):
        if check(path) is not None:
            found += 1
    assert found > 1000  # the fuzz reaches the parser's matches, not just its refusals


def test_bounded_work() -> None:
    """The worst paths within MAX_PATH parse fast: many components, long ones, near-matches."""
    worst = [
        "/a" * (MAX_PATH // 2), "/" + "a-" * 2047, "/lxc" * 1024, "/kubepods" * 455,
        "/" + "/".join(["x" * 255] * 15), "/" + ("kubepods-" * 27 + "pod") * 15,
        "/" + "/".join(["a." * 127 + "service"] * 15),
    ]
    start = time.perf_counter()
    for path in worst:
        for _ in range(10):
            check(path)
    assert time.perf_counter() - start < 2
