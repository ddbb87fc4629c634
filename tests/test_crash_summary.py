"""The crash summary on damaged memory: each of its reads, failing in each way drgn and its
helpers fail on a damaged dump, leaves that part out (or says it is unreadable), never a
traceback; and a dump whose panic_cpu cannot be read gets no made-up summary.

The program here is a stand-in that answers the summary's few reads (tests/kernel/test_crash.py
reads real crash dumps); what fails is the read named by each case."""

from __future__ import annotations

import io
from typing import Any

import drgn
import drgn.helpers.linux.panic
import drgn.helpers.linux.sched
import pytest
from drgn import BadDataError, FaultError, ObjectAbsentError, OutOfBoundsError, ProgramFlags
from drgn_ss.commands import ss
from drgn_ss.kernel import crash

#: What drgn and its helpers raise on damaged memory (OverflowError: drgn's printk helper on
#: a damaged log ring; a plain Exception: drgn's errors of no other kind).
DAMAGE = [
    FaultError("could not read memory from kdump: Excluded page", 0xFFFF888000001000),
    OverflowError("int too big to convert"),
    ValueError("bad value"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    ObjectAbsentError("object absent"),
    OutOfBoundsError("out of bounds"),
    LookupError("could not find 'runqueues'"),
    KeyError("x"),
    BadDataError("VMCOREINFO does not contain valid TCR_EL1_T1SZ or VA_BITS"),
    MemoryError(),
    ZeroDivisionError("division by zero"),
    Exception("crashed thread not found"),
]


class Value:
    """A drgn Object's stand-in: ``string_()`` or an attribute, failing if told to."""

    def __init__(self, data: bytes = b"", error: BaseException | None = None, **attrs: Any) -> None:
        self.data, self.error = data, error
        self.__dict__.update(attrs)

    def string_(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self.data


class Thread:
    def __init__(self, error: BaseException | None, comm: Value) -> None:
        self.tid = 4242
        self._error, self._task = error, Value(comm=comm)

    @property
    def object(self) -> Value:
        if self._error is not None:
            raise self._error
        return self._task


class Program:
    """Answers the summary's reads; ``fail[read]`` raises instead."""

    def __init__(self, fail: dict[str, BaseException], info: dict[str, str] | None = None) -> None:
        self.fail = fail
        self.flags = ProgramFlags.IS_LINUX_KERNEL
        self.cache: dict[str, Any] = {"drgn_ss.vmcoreinfo": {"OSRELEASE": "6.1.0-18-cloud-amd64",
                                                             "CRASHTIME": "1700000000"}
                                      if info is None else info}

    def __getitem__(self, name: str) -> Any:
        if name == "prb":
            if "prb" not in self.fail:
                raise KeyError(name)  # a kernel before the lockless ring: drgn bounds the old log
            return self.fail["prb"]
        assert name == "UTS_RELEASE"
        return Value(b"6.1.0-18\x1b[31m-cloud-amd64", self.fail.get("release"))

    def crashed_thread(self) -> Thread:
        if "crashed_thread" in self.fail:
            raise self.fail["crashed_thread"]
        return Thread(self.fail.get("task"), Value(b"sh\x1b[2J", self.fail.get("comm")))


def raises(error: BaseException | None, value: Any) -> Any:
    def read(*args: Any, **kwargs: Any) -> Any:
        if error is not None:
            raise error
        return value
    return read


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install the helpers' stand-ins, each failing with ``fail[its name]``."""
    def install(fail: dict[str, BaseException]) -> None:
        from datetime import datetime, timezone
        monkeypatch.setattr(crash, "crash_time",
                            raises(fail.get("time"), datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)))
        monkeypatch.setattr(crash, "uptime_seconds", raises(fail.get("uptime"), 123.4))
        # panic_message() itself runs (undecorated: the stand-in is no drgn.Program): what
        # fails is the log it reads (get_dmesg).
        panic = drgn.helpers.linux.panic
        monkeypatch.setattr(panic, "panic_message", getattr(panic.panic_message, "__wrapped__", None))
        log = b"[ 1.0] x\nKernel panic - not syncing: \x1b]0;owned\x07\n"
        monkeypatch.setattr(panic, "get_dmesg", raises(fail.get("dmesg"), log))
        monkeypatch.setattr(drgn.helpers.linux.sched, "task_cpu", raises(fail.get("cpu"), 1))
    return install


def summary(fail: dict[str, BaseException]) -> list[str]:
    lines = crash.crash_summary(Program(fail))
    assert lines is not None and len(lines) == 3
    for line in lines:
        assert line.isascii() and line.isprintable(), line
    return lines


def test_whole_summary_escaped(reads: Any) -> None:
    reads({})
    assert summary({}) == [
        "crash dump of Linux 6.1.0-18.[31m-cloud-amd64, crashed 2024-01-02 03:04:05 UTC, 123.4 s after boot",
        "panic: Kernel panic - not syncing: .]0;owned.",
        "crashing task: pid 4242 (sh.[2J) on CPU 1",
    ]


@pytest.mark.parametrize("error", DAMAGE, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("read, expected", [
    ("release", (0, "crash dump of Linux 6.1.0-18-cloud-amd64, crashed ")),  # VMCOREINFO's instead
    ("time", (0, "crash dump of Linux 6.1.0-18.[31m-cloud-amd64, 123.4 s after boot")),
    ("uptime", (0, "crash dump of Linux 6.1.0-18.[31m-cloud-amd64, crashed 2024-01-02 03:04:05 UTC")),
    ("dmesg", (1, "panic: (the kernel log is unreadable)")),
    ("crashed_thread", (2, "crashing task: unreadable (")),
    ("task", (2, "crashing task: pid 4242")),
    ("comm", (2, "crashing task: pid 4242 on CPU 1")),
    ("cpu", (2, "crashing task: pid 4242 (sh.[2J)")),
])
def test_each_read_tolerates_damage(read: str, expected: tuple[int, str], error: BaseException,
                                    reads: Any) -> None:
    fail = {read: error}
    reads(fail)
    index, text = expected
    line = summary(fail)[index]
    assert line.startswith(text) if text.endswith(("(", " ")) else line == text


@pytest.mark.parametrize("error", [TypeError("a bug"), AttributeError("a bug"), NameError("a bug")])
def test_programming_errors_surface(error: BaseException, reads: Any) -> None:
    fail = {"dmesg": error}
    reads(fail)
    with pytest.raises(type(error)):
        crash.crash_summary(Program(fail))


class Memory:
    def __init__(self, error: BaseException | None, cpu: int = 0xFFFFFFFF) -> None:
        self.read_u32 = raises(error, cpu)


class Facts:
    def __init__(self, error: BaseException | None = None) -> None:
        self.symbol = raises(error, 0xFFFFFFFF82000000)
        self.need_debug_info = raises(None, None)


@pytest.mark.parametrize("memory, facts, expected", [
    (Memory(None), Facts(), False),  # PANIC_CPU_INVALID: a dump of a running kernel (QEMU's)
    (Memory(None, 1), Facts(), True),
    *((Memory(e), Facts(), None) for e in DAMAGE),  # panic_cpu unreadable: cannot tell
    (Memory(None), Facts(LookupError("no symbol 'panic_cpu' in this kernel")), None),
])
def test_panicked_is_unknown_where_panic_cpu_cannot_be_read(
        memory: Memory, facts: Facts, expected: bool | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crash, "kernel_memory", lambda prog: memory)
    monkeypatch.setattr(crash, "kernel_facts", lambda prog: facts)
    prog = Program({}, info={"OSRELEASE": "6.1.0"})
    assert crash.panicked(prog) is expected
    if expected is not True:
        # drgn's crashed_thread() answers on such a dump too (CPU 0's task): no summary is made of it.
        assert crash.crash_summary(prog) is None


def test_crashtime_says_panicked_without_reading_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crash, "kernel_memory", raises(AssertionError("not read"), None))
    assert crash.panicked(Program({})) is True


@pytest.mark.parametrize("state, said", [
    (None, "no crash summary: whether this kernel panicked cannot be read (panic_cpu)"),
    (False, ""),
])
def test_cli_says_nothing_false_of_a_dump_that_may_not_have_panicked(
        state: bool | None, said: str, reads: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No crash summary; --header says what any dump has: its release, time and uptime."""
    reads({})
    monkeypatch.setattr(ss, "panicked", lambda prog: state)
    monkeypatch.setattr(ss, "crash_summary", raises(AssertionError("no summary asked for"), None))
    monkeypatch.setattr(ss, "kernel_facts", lambda prog: Facts())
    prog = Program({}, info={"OSRELEASE": "6.1.0-18-cloud-amd64"})
    header = io.StringIO()
    assert ss.show_crash_summary(prog, "drgn-ss", header) == said
    assert header.getvalue() == ("# dump of Linux 6.1.0-18.[31m-cloud-amd64, taken 2024-01-02 03:04:05 UTC, "
                                 "123.4 s after boot\n")
    assert ss.show_crash_summary(prog, "drgn-ss", None) == said
    assert capsys.readouterr() == ("", "")


def test_header_of_a_dump_without_debug_info(reads: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No debug info to be had (LookupError): the header is what can be read without it."""
    reads({"time": KeyError("tk_core")})

    class NoDebugInfo:
        def need_debug_info(self) -> None:
            raise LookupError("no debug info for kernel 6.1")

    monkeypatch.setattr(ss, "panicked", lambda prog: False)
    monkeypatch.setattr(ss, "kernel_facts", lambda prog: NoDebugInfo())
    header = io.StringIO()
    assert ss.show_crash_summary(Program({}, info={}), "drgn-ss", header) == ""
    assert header.getvalue() == "# dump of Linux 6.1.0-18.[31m-cloud-amd64, 123.4 s after boot\n"


def test_crash_without_debug_info_says_what_it_can(reads: Any, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A dump of a panic read without debug info: the release, crash time and uptime (read raw),
    and one line on why the panic message and task are missing; on stderr or as the header."""
    reads({})

    class NoDebugInfo:
        def need_debug_info(self) -> None:
            raise LookupError("no debug info for kernel 6.1.0-18-cloud-amd64")

    monkeypatch.setattr(ss, "panicked", lambda prog: True)
    monkeypatch.setattr(ss, "kernel_facts", lambda prog: NoDebugInfo())
    monkeypatch.setattr(ss, "crash_summary", raises(AssertionError("needs debug info"), None))
    expected = ["crash dump of Linux 6.1.0-18.[31m-cloud-amd64, crashed 2024-01-02 03:04:05 UTC, "
                "123.4 s after boot",
                "no panic message or crashing task: no debug info for kernel 6.1.0-18-cloud-amd64 "
                "(give -s VMLINUX)"]
    header = io.StringIO()
    assert ss.show_crash_summary(Program({}), "drgn-ss", header) == ""
    assert header.getvalue().splitlines() == [f"# {line}" for line in expected]
    assert ss.show_crash_summary(Program({}), "drgn-ss", None) == ""
    assert capsys.readouterr().err.splitlines() == [f"drgn-ss: {line}" for line in expected]


def test_cli_prints_the_summary_on_stderr_or_as_header(reads: Any, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    reads({"dmesg": OverflowError("int too big to convert")})
    monkeypatch.setattr(ss, "kernel_facts", lambda prog: Facts())
    prog = Program({})
    header = io.StringIO()
    assert ss.show_crash_summary(prog, "drgn-ss", header) == ""
    assert header.getvalue().splitlines()[1] == "# panic: (the kernel log is unreadable)"
    assert ss.show_crash_summary(prog, "drgn-ss", None) == ""
    err = capsys.readouterr().err
    assert err.splitlines()[2] == "drgn-ss: crashing task: pid 4242 (sh.[2J) on CPU 1"
    assert "\x1b" not in err


def ring(count_bits: int, tail: int, head: int) -> Any:
    """A stand-in for the kernel log's ring (``prb``): its size and its oldest and newest ids."""
    def value(v: int) -> Value:
        return Value(value_=lambda: v)
    return Value(desc_ring=Value(count_bits=value(count_bits), tail_id=Value(counter=value(tail)),
                                 head_id=Value(counter=value(head))))


@pytest.mark.parametrize(("prb", "walked"), [
    (ring(12, 100, 4000), True),  # a ring as a Debian kernel has it
    (ring(12, 100, 100 + 5000), False),  # further apart than the ring holds
    (ring(63, 0, 10), False),  # a ring no kernel can allocate
    (ring(0, 0, 0), False),
    (ring(12, (1 << 62) - 10, 20), True),  # the ids wrapped
])
def test_the_log_is_walked_only_within_its_ring(prb: Any, walked: bool, reads: Any) -> None:
    """drgn's printk walks from the oldest record id to the newest whatever they are: a damaged
    ring (2^62 steps, gigabytes of records) is said to be unreadable instead of walked."""
    fail = {"prb": prb}
    reads(fail)
    line = summary(fail)[1]
    assert (line != "panic: (the kernel log is unreadable)") == walked, line
