"""Damaged copies of a real dump, and what must hold when drgn-ss reads them.

Each :class:`Damage` names kernel objects of the intact dump (found with drgn's own helpers
on the test's Program) and the bytes to write over them. :class:`DumpCopy` applies them to a
copy of the ELF dump and restores the bytes afterwards, so one copy serves every case.
:func:`check_run` states the rules every run on a damaged dump must keep (the issue's
acceptance): no traceback, a bounded time and memory, no socket listed twice, no socket or
owner the intact dump does not have, no control byte on stdout, and a dropped socket always
counted (exit 3 with the warning).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import drgn
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.list_nulls import hlist_nulls_for_each_entry
from drgn.helpers.linux.mm import follow_phys
from drgn.helpers.linux.pid import find_task
from drgn_ss.kernel.images import ElfImage

DRGN_SS = os.path.join(os.path.dirname(sys.executable), "drgn-ss")
#: What a run may take (the issue: no run past 60 s, peak memory under 1 GB).
TIMEOUT_S = 60
MAX_RSS_KB = 1 << 20
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

Patch = tuple[int, bytes]  # (kernel virtual address, bytes), or (-1 - file offset, bytes)


def u64(value: int) -> bytes:
    return (value & (1 << 64) - 1).to_bytes(8, "little")


def u32(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, "little")


def file_offsets(prog: drgn.Program, path: str) -> Callable[[int], int]:
    """A function from a kernel virtual address to where an ELF dump of ``prog`` holds it."""
    image = ElfImage(path)
    segments = list(zip(image.starts, image.ends, image.offsets))
    init_mm = prog["init_mm"].address_of_()

    def offset(addr: int) -> int:
        phys = follow_phys(init_mm, addr)
        for start, end, off in segments:
            if start <= phys < end:
                return int(off + phys - start)
        raise AssertionError(f"{addr:#x} is not in the dump")

    return offset


class DumpCopy:
    """
    An ELF dump patched at kernel virtual addresses, its bytes restored after each case: the
    dump itself where it can be written (the test matrix's scratch copy: a 2 GB copy costs
    half a minute), else a copy at ``path``.
    """

    def __init__(self, prog: drgn.Program, original: str, path: str) -> None:
        try:
            with open(original, "r+b"):
                pass
            path = original
        except OSError:
            shutil.copyfile(original, path)
        self.copied = path != original
        self.prog = prog
        self.path = path
        self.file_offset = file_offsets(prog, path)
        #: The bytes a case overwrote, kept on disk until they are back: a run killed in the
        #: middle of a case leaves the dump patched, and the next run mends it first.
        self.journal = f"{path}.hostile-journal"
        if os.path.exists(self.journal):
            with open(self.journal) as f:
                self.restore([(off, bytes.fromhex(data)) for off, data in json.load(f)])

    def offset(self, addr: int) -> int:
        if addr < 0:  # a file offset
            return -1 - addr
        return self.file_offset(addr)

    def apply(self, patches: list[Patch]) -> list[tuple[int, bytes]]:
        saved = []
        with open(self.path, "r+b") as f:
            for addr, data in patches:
                off = self.offset(addr)
                f.seek(off)
                saved.append((off, f.read(len(data))))
            with open(self.journal, "w") as j:
                json.dump([(off, data.hex()) for off, data in saved], j)
                j.flush()
                os.fsync(j.fileno())
            for (off, _), (_, data) in zip(saved, patches):
                f.seek(off)
                f.write(data)
        return saved

    def restore(self, saved: list[tuple[int, bytes]]) -> None:
        with open(self.path, "r+b") as f:
            for off, data in reversed(saved):
                f.seek(off)
                f.write(data)
        if os.path.exists(self.journal):
            os.unlink(self.journal)


@dataclass
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_kb: int


def drgn_ss(path: str, *args: str, vmlinux: str | None = None, pure_python: bool = False,
            cache: str | None = None) -> Run:
    """drgn-ss on a dump, timed, its peak RSS measured by GNU time."""
    env = {**os.environ, "DEBUGINFOD_URLS": ""}
    env.pop("DRGN_SS_PURE_PYTHON", None)
    if pure_python:
        env["DRGN_SS_PURE_PYTHON"] = "1"
    if cache:
        env["DRGN_SS_CACHE"] = cache
    rss_file = f"{path}.rss"
    argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file, DRGN_SS, "-c", path,
            *(["-s", vmlinux] if vmlinux else []), *args]
    start = time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Run(args, -9, "", "timed out", TIMEOUT_S, 0)
    seconds = time.monotonic() - start
    try:
        with open(rss_file) as f:
            rss = int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        rss = 0
    return Run(args, p.returncode, p.stdout.decode(errors="surrogateescape"),
               p.stderr.decode(errors="surrogateescape"), seconds, rss)


Command = tuple[tuple[str, ...], bool]  # (arguments, pure Python)
#: The commands each damaged copy is read with (the first with the debug vmlinux, ``-s``; the
#: others with the facts it cached).
COMMANDS: tuple[Command, ...] = (
    (("--json", "-tanp"), False),
    (("--json", "-tanp"), True),
    (("--json", "-uanp"), False),
    (("--json", "-tanp", "--all-netns"), False),
    (("-H", "-tanpeim"), False),
    (("--summary", "--all-netns"), False),
)
#: For damage to UDP's table: both walks.
UDP_COMMANDS: tuple[Command, ...] = (
    (("--json", "-uanp"), False),
    (("--json", "-uanp"), True),
    (("-H", "-uanpe", "--all-netns"), False),
)
ALL_COMMANDS = (*COMMANDS, *UDP_COMMANDS[1:])


def sockets(run: Run) -> list[dict[str, Any]]:
    if not run.stdout.strip():
        return []
    return list(json.loads(run.stdout))


def owners_by_sk(listing: list[dict[str, Any]]) -> dict[str, set[tuple[str, int, int]]]:
    return {s["sk"]: {(o["command"], o["pid"], o["fd"]) for o in s.get("owners", [])} for s in listing}


def check_run(run: Run, intact: Run | None) -> list[str]:
    """
    What is wrong with one run on a damaged dump (empty: nothing); ``intact``: the same
    command on the intact dump.
    """
    problems = []
    what = " ".join(run.args)
    if run.returncode == -9:
        return [f"{what}: ran past {TIMEOUT_S} s"]
    if "Traceback" in run.stderr or run.returncode not in (0, 1, 3):
        problems.append(f"{what}: exit {run.returncode}, stderr: {run.stderr[-1500:]}")
    if run.max_rss_kb > MAX_RSS_KB:
        problems.append(f"{what}: peak RSS {run.max_rss_kb} kB")
    if CONTROL.search(run.stdout):
        problems.append(f"{what}: a control byte on stdout: {CONTROL.search(run.stdout)!r}")
    if run.returncode == 3 and "warning" not in run.stderr:
        problems.append(f"{what}: exit 3 without a warning")
    if run.returncode == 1 and (run.stdout or len(run.stderr.strip().splitlines()) > 2):
        problems.append(f"{what}: exit 1 must be a line on stderr and nothing listed: {run.stderr[-500:]}")
    if "--json" not in run.args or intact is None or run.returncode not in (0, 3):
        return problems
    try:
        got = sockets(run)
    except ValueError as e:
        return [*problems, f"{what}: not JSON ({e})"]
    truth = owners_by_sk(sockets(intact))
    listed = [s["sk"] for s in got]
    twice = {sk for sk in listed if listed.count(sk) > 1}
    if twice:
        problems.append(f"{what}: listed twice: {sorted(twice)}")
    phantoms = set(listed) - set(truth)
    if phantoms:
        problems.append(f"{what}: sockets the intact dump does not have: {sorted(phantoms)}")
    for sk, owners in owners_by_sk(got).items():
        if sk in truth and not owners <= truth[sk]:
            problems.append(f"{what}: owners {sorted(owners - truth[sk])} on {sk}, which they do not hold")
    if run.returncode == 0 and set(truth) - set(listed):
        problems.append(f"{what}: exit 0 but {len(set(truth) - set(listed))} sockets missing, not counted")
    return problems


# -- finding the objects to damage -----------------------------------------------------------


@dataclass
class Kernel:
    """The intact dump's objects that the damage cases patch, found with drgn's helpers."""

    prog: drgn.Program
    workload: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def init_net(self) -> drgn.Object:
        return self.prog["init_net"]

    def hashinfo(self) -> drgn.Object:
        return self.init_net.ipv4.tcp_death_row.hashinfo

    def udp_table(self) -> drgn.Object:
        try:
            return self.init_net.ipv4.udp_table
        except AttributeError:
            return self.prog["udp_table"].address_of_()

    def ehash_chains(self) -> list[tuple[int, list[drgn.Object]]]:
        """(bucket index, sockets) of every non-empty ehash chain of init_net's table."""
        h = self.hashinfo()
        out = []
        for i in range(h.ehash_mask.value_() + 1):
            head = h.ehash[i].chain
            if head.first.value_() & 1:
                continue
            out.append((i, list(hlist_nulls_for_each_entry("struct sock", head.address_of_(),
                                                            "__sk_common.skc_nulls_node"))))
        return out

    def established(self) -> list[drgn.Object]:
        """init_net's full sockets in ehash (states other than TIME-WAIT and NEW_SYN_RECV)."""
        return [sk for _, chain in self.ehash_chains() for sk in chain
                if _common(sk).skc_state.value_() not in (6, 12)
                and _common(sk).skc_net.net == self.init_net.address_of_()]

    def timewait(self) -> list[drgn.Object]:
        return [sk for _, chain in self.ehash_chains() for sk in chain if _common(sk).skc_state == 6]

    def udp_chains(self) -> list[tuple[int, list[drgn.Object]]]:
        from drgn.helpers.linux.list import hlist_for_each_entry
        t = self.udp_table()
        out = []
        for i in range(t.mask.value_() + 1):
            head = t.hash[i].head
            if not head.first:
                continue
            socks = hlist_for_each_entry("struct sock", head.address_of_(), "__sk_common.skc_node")
            out.append((i, list(socks)))
        return out

    def tasks(self) -> list[drgn.Object]:
        head = self.prog["init_task"].tasks.address_of_()
        return list(list_for_each_entry("struct task_struct", head, "tasks"))

    def workload_task(self) -> drgn.Object:
        return find_task(self.prog, self.workload["pid"])


def _common(sk: drgn.Object) -> drgn.Object:
    return sk.member_("__sk_common")  # not sk.__sk_common: a class body would mangle the name


def addr(obj: drgn.Object) -> int:
    return int(obj.address_ if obj.address_ is not None else obj.value_())


def member(obj: drgn.Object, path: str) -> int:
    """Address of a member of the object ``obj`` points to, or of ``obj``'s own member."""
    target = obj[0] if obj.type_.unaliased_kind() == drgn.TypeKind.POINTER else obj
    return int(drgn.cast("unsigned long", target.address_of_()).value_()) + drgn.offsetof(target.type_, path)


@dataclass
class Damage:
    """One case: what it is, and how to make it from the intact dump's objects."""

    name: str
    make: Callable[[Kernel], list[Patch]]
    #: The commands to read it with.
    commands: tuple[Command, ...] = COMMANDS
    #: The one-line error allowed instead of a listing (exit 1), e.g. for a dump that is not x86-64.
    may_fail: bool = False


def _nulls_link(k: Kernel) -> int:
    return drgn.offsetof(k.prog.type("struct sock"), "__sk_common.skc_nulls_node")


def _udp_link(k: Kernel) -> int:
    return drgn.offsetof(k.prog.type("struct sock"), "__sk_common.skc_node")


def _two_chains(k: Kernel) -> tuple[list[drgn.Object], list[drgn.Object]]:
    chains = [c for _, c in k.ehash_chains() if c]
    assert len(chains) >= 2, chains
    return chains[0], chains[1]


def _sock(sk: drgn.Object, path: str) -> int:
    return member(sk, path)


def _state(sk: drgn.Object) -> int:
    return _sock(sk, "__sk_common.skc_state")


def _kernel_sizes(k: Kernel) -> int:
    return int(k.prog.type("struct sock").size)


def _pick_estab(k: Kernel, i: int = 0) -> drgn.Object:
    estab = k.established()
    assert len(estab) > i, estab
    return estab[i]


def _task_with_sockets(k: Kernel) -> drgn.Object:
    return k.workload_task()


def _netns_list_loop(k: Kernel) -> list[Patch]:
    # The last namespace's list.next points back at init_net's node: a loop that never comes home.
    head = k.prog["net_namespace_list"].address_of_()
    nets = list(list_for_each_entry("struct net", head, "list"))
    assert len(nets) >= 2
    return [(member(nets[-1], "list.next"), u64(member(nets[0], "list")))]


def _task_loop(k: Kernel) -> list[Patch]:
    tasks = k.tasks()
    return [(member(tasks[-1], "tasks.next"), u64(member(tasks[1], "tasks")))]


def _cut_task_list(k: Kernel) -> list[Patch]:
    # The first task's next pointer leads nowhere the dump holds: forwards, the walk stops there.
    tasks = k.tasks()
    return [(member(tasks[0], "tasks.next"), u64(0xFFFF_8000_DEAD_0000))]


def _ehash_mask(value: int) -> Callable[[Kernel], list[Patch]]:
    return lambda k: [(member(k.hashinfo(), "ehash_mask"), u32(value))]


def _lhash2_mask(value: int) -> Callable[[Kernel], list[Patch]]:
    return lambda k: [(member(k.hashinfo(), "lhash2_mask"), u32(value))]


def _udp_mask(value: int) -> Callable[[Kernel], list[Patch]]:
    return lambda k: [(member(k.udp_table(), "mask"), u32(value))]


def _ehash_mask_larger(k: Kernel) -> list[Patch]:
    mask = k.hashinfo().ehash_mask.value_()
    return [(member(k.hashinfo(), "ehash_mask"), u32(mask << 4 | 0xF))]


def _bucket_head(value: int) -> Callable[[Kernel], list[Patch]]:
    def make(k: Kernel) -> list[Patch]:
        i, _ = next((i, c) for i, c in k.ehash_chains() if c)
        return [(addr(k.hashinfo().ehash[i].chain.first.address_of_()), u64(value))]
    return make


def _next_below_offset(k: Kernel) -> list[Patch]:
    sk = _pick_estab(k)
    return [(_sock(sk, "__sk_common.skc_nulls_node.next"), u64(0x40))]


def _udp_next_below_offset(k: Kernel) -> list[Patch]:
    _, chain = k.udp_chains()[0]
    return [(_sock(chain[0], "__sk_common.skc_node.next"), u64(0x40))]


def _two_cycle(k: Kernel) -> list[Patch]:
    a, b = _two_chains(k)
    # a's last node points to b's first, whose last points back to a's first.
    link = _nulls_link(k)
    return [(_sock(a[-1], "__sk_common.skc_nulls_node.next"), u64(addr(b[0]) + link)),
            (_sock(b[-1], "__sk_common.skc_nulls_node.next"), u64(addr(a[0]) + link))]


def _join_chains(k: Kernel) -> list[Patch]:
    a, b = _two_chains(k)
    link = _nulls_link(k)
    return [(_sock(a[-1], "__sk_common.skc_nulls_node.next"), u64(addr(b[0]) + link))]


def _udp_join(k: Kernel) -> list[Patch]:
    chains = [c for _, c in k.udp_chains()]
    assert len(chains) >= 2
    link = _udp_link(k)
    return [(_sock(chains[0][-1], "__sk_common.skc_node.next"), u64(addr(chains[1][0]) + link))]


def _udp_loop(k: Kernel) -> list[Patch]:
    _, chain = k.udp_chains()[0]
    link = _udp_link(k)
    return [(_sock(chain[-1], "__sk_common.skc_node.next"), u64(addr(chain[0]) + link))]


def _sk_socket_swapped(k: Kernel) -> list[Patch]:
    held = [sk for sk in k.established() if sk.sk_socket]
    assert len(held) >= 2, held
    a, b = held[0], held[1]
    # a's sk_socket made b's: b's owners must not show up on a.
    return [(_sock(a, "sk_socket"), u64(b.sk_socket.value_()))]


def _private_data_moved(k: Kernel) -> list[Patch]:
    task = k.workload_task()
    fdt = task.files.fdt
    socks = []
    for fd in range(fdt.max_fds.value_()):
        f = fdt.fd[fd]
        if f and f.f_op == k.prog["socket_file_ops"].address_of_():
            socks.append(f)
    assert len(socks) >= 2
    return [(member(socks[0], "private_data"), u64(socks[1].private_data.value_()))]


def _max_fds(k: Kernel) -> list[Patch]:
    return [(member(k.workload_task().files.fdt, "max_fds"), u32(0xFFFFFFFF))]


def _state_value(value: int) -> Callable[[Kernel], list[Patch]]:
    return lambda k: [(_state(_pick_estab(k)), bytes([value]))]


class NotHere(Exception):
    """The dump has no object of the kind a damage needs (e.g. its TIME-WAIT socket expired)."""


def _tw_substate(k: Kernel) -> list[Patch]:
    tw = k.timewait()
    if not tw:
        raise NotHere("no TIME-WAIT socket left in this dump")
    t = drgn.cast("struct inet_timewait_sock *", tw[0])
    return [(member(t, "tw_substate"), b"\x2a")]


def _skc_net(value: int) -> Callable[[Kernel], list[Patch]]:
    return lambda k: [(_sock(_pick_estab(k), "__sk_common.skc_net"), u64(value))]


def _fill_ff(k: Kernel) -> list[Patch]:
    sk = _pick_estab(k)
    size = drgn.offsetof(k.prog.type("struct sock"), "__sk_common.skc_nulls_node")
    return [(addr(sk), b"\xff" * size)]


def _other_marker(k: Kernel) -> list[Patch]:
    h = k.hashinfo()
    empty = next(i for i in range(h.ehash_mask.value_() + 1) if h.ehash[i].chain.first.value_() & 1)
    return [(addr(h.ehash[empty].chain.first.address_of_()), u64((empty + 7) << 1 | 1))]


def _garbage_pointer(path: str, table: Callable[[Kernel], drgn.Object]) -> Callable[[Kernel], list[Patch]]:
    return lambda k: [(member(table(k), path), u64(0xFFFF_8000_DEAD_0000))]


def _ifname(k: Kernel) -> list[Patch]:
    from drgn.helpers.linux.net import for_each_netdev
    dev = next(d for d in for_each_netdev(k.init_net.address_of_()) if d.name.string_() == b"lo")
    return [(member(dev, "name"), b"lo\n\x1b[31mFAKE 6.6.6.6:7008\0")]


def _ca_name(k: Kernel) -> list[Patch]:
    sk = _pick_estab(k)
    ops = drgn.cast("struct inet_connection_sock *", sk).icsk_ca_ops
    return [(member(ops, "name"), b"cu\x1b[2Jbic\n\0")]


def _panic_cpu_only(k: Kernel) -> list[Patch]:
    # A dump that looks like it panicked, with the printk ring's descriptors damaged.
    prb = k.prog["prb"]
    return [(member(k.prog["panic_cpu"].address_of_(), "counter"), u32(0)),
            (member(prb.desc_ring.descs, "state_var"), u64(-1)),
            (member(prb, "desc_ring.count_bits"), u32(63))]


def _page_offset_base(k: Kernel) -> list[Patch]:
    pob = k.prog["page_offset_base"]
    return [(addr(pob.address_of_()), u64(pob.value_() + (1 << 44)))]


def _init_tasks_null(k: Kernel) -> list[Patch]:
    return [(member(k.prog["init_task"].address_of_(), "tasks.next"), u64(0))]


def _elf_machine(k: Kernel) -> list[Patch]:
    return [(-1 - 18, (0xB7).to_bytes(2, "little"))]  # e_machine: EM_AARCH64


def vmcoreinfo_patch(path: str, key: bytes, value: bytes) -> Patch:
    """A patch of the dump's VMCOREINFO note (near the file's start): ``key``'s value, as long as it was."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    at = head.find(b"\n" + key + b"=")
    if at < 0 and key == b"OSRELEASE":  # VMCOREINFO's first line
        at = head.find(b"OSRELEASE=") - 1
    assert at >= -1 and head.find(key + b"=") >= 0, key
    start = at + len(key) + 2
    end = head.index(b"\n", start)
    assert len(value) <= end - start, (value, head[start:end])
    return -1 - start, value.ljust(end - start, b"/")


def _kerneloffset(k: Kernel) -> list[Patch]:
    return [vmcoreinfo_patch(k.extra["path"], b"KERNELOFFSET", b"8")]


def _jiffies_zero(k: Kernel) -> list[Patch]:
    return [(addr(k.prog["jiffies_64"].address_of_()), u64(0))]


DAMAGES: tuple[Damage, ...] = (
    # 1. tracebacks
    Damage("bucket-head-0x40", _bucket_head(0x40)),
    Damage("next-0x40", _next_below_offset),
    Damage("udp-next-0x40", _udp_next_below_offset, UDP_COMMANDS),
    Damage("init-task-next-null", _init_tasks_null),
    Damage("page-offset-base-shifted", _page_offset_base),
    Damage("kerneloffset-shifted", _kerneloffset, may_fail=True),
    Damage("ehash-mask-ffffffff", _ehash_mask(0xFFFFFFFF)),
    Damage("lhash2-mask-ffffffff", _lhash2_mask(0xFFFFFFFF)),
    Damage("udp-mask-ffffffff", _udp_mask(0xFFFFFFFF), UDP_COMMANDS),
    Damage("max-fds-ffffffff", _max_fds),
    Damage("elf-machine-aarch64", _elf_machine, may_fail=True),
    Damage("printk-damaged-panic", _panic_cpu_only),
    # 2. hangs
    Damage("task-list-loop", _task_loop),
    Damage("netns-list-loop", _netns_list_loop),
    Damage("ehash-mask-larger-than-table", _ehash_mask_larger),
    # 3. lies
    Damage("ehash-two-cycle", _two_cycle),
    Damage("ehash-chains-join", _join_chains),
    Damage("udp-chains-join", _udp_join, UDP_COMMANDS),
    Damage("udp-loop", _udp_loop, UDP_COMMANDS),
    Damage("sk-socket-swapped", _sk_socket_swapped),
    Damage("private-data-moved", _private_data_moved),
    Damage("ifname-newline-escape", _ifname),
    Damage("ca-name-escape", _ca_name),
    Damage("state-42", _state_value(42)),
    Damage("state-0", _state_value(0)),
    Damage("state-timewait-on-full", _state_value(6)),
    Damage("state-new-syn-recv-on-full", _state_value(12)),
    Damage("tw-substate-42", _tw_substate),
    Damage("skc-net-garbage", _skc_net(0xFFFF_8880_0BAD_0000)),
    Damage("socket-filled-ff", _fill_ff),
    Damage("bucket-other-marker", _other_marker),
    Damage("ehash-pointer-garbage", _garbage_pointer("ehash", lambda k: k.hashinfo())),
    Damage("lhash2-pointer-garbage", _garbage_pointer("lhash2", lambda k: k.hashinfo())),
    Damage("udp-hash-pointer-garbage", _garbage_pointer("hash", lambda k: k.udp_table()), UDP_COMMANDS),
    # 5. owners beyond a cut in the task list
    Damage("task-list-cut", _cut_task_list),
)


def run_case(copy: DumpCopy, kernel: Kernel, damage: Damage, intact: dict[Command, Run],
             vmlinux: str | None) -> Iterator[tuple[Run, list[str]]]:
    """Apply one damage, read the copy with each command, restore it; yields each run and its problems."""
    saved = copy.apply(damage.make(kernel))
    try:
        for i, (args, pure) in enumerate(damage.commands):
            run = drgn_ss(copy.path, *args, vmlinux=None if i else vmlinux, pure_python=pure)
            problems = check_run(run, intact.get((args, pure)))
            if run.returncode == 1 and not damage.may_fail:
                problems.append(f"{' '.join(args)}: exit 1 where the rest should be listed: "
                                f"{run.stderr.strip()}")
            yield run, problems
    finally:
        copy.restore(saved)
