"""Tasks: one bounded, loop-checked walk of the task list, and the thread-group leaders
of a pid namespace, used by owners and namespaces.
"""

from __future__ import annotations

from drgn import FaultError, Program, ProgramFlags
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.memory import list_nodes, list_reachable
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.strings import c_string
from drgn_ss.kernel.target import kernel_memory, object_limit

__all__ = [
    "PIDTYPE_TGID", "PID_MAX_LIMIT", "TaskLayout", "XA_CHUNK_SHIFT", "task_limit", "task_list",
    "process_threads", "tasks_by_every_route", "tasks_by_pid", "thread_group_leaders",
]


class TaskLayout:
    """Offsets for the raw walk of tasks and their file tables, from the facts cache."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        T = "struct task_struct"
        self.tasks = facts.offset(T, "tasks")
        self.tgid = facts.field(T, "tgid")
        self.comm = facts.offset(T, "comm")
        self.files = facts.field(T, "files")
        self.span = max(self.tgid.end, self.comm + 16, self.files.end)
        self.fdt = facts.offset("struct files_struct", "fdt")
        self.max_fds = facts.field("struct fdtable", "max_fds")
        self.fd = facts.offset("struct fdtable", "fd")
        self.f_op = facts.offset("struct file", "f_op")
        self.private_data = facts.offset("struct file", "private_data")
        self.file_span = max(self.f_op, self.private_data) + 8
        self.socket_file = facts.offset("struct socket", "file")
        self.socket_sk = facts.offset("struct socket", "sk")
        self.sk_socket = facts.offset("struct sock", "sk_socket")
        self.socket_file_ops = facts.symbol("socket_file_ops")
        self.init_task = facts.symbol("init_task")
        # -T: a process's threads, on ``signal->thread_head`` through each ``thread_node``
        # (leader first, then in creation order, as /proc/PID/task lists them).
        self.pid = facts.field(T, "pid")
        self.signal = facts.offset(T, "signal")
        self.thread_node = facts.offset(T, "thread_node")
        self.thread_head = facts.offset("struct signal_struct", "thread_head")
        self.thread_span = max(self.span, self.pid.end, self.signal + 8)
        #: The same, for drgn_ss._fast.socket_holders.
        self.native = {
            "max_fds": self.max_fds.native,
            "fdt": self.fdt, "fd": self.fd, "f_op": self.f_op, "private_data": self.private_data,
            "file_span": self.file_span, "socket_file_ops": self.socket_file_ops,
            "socket_file": self.socket_file, "socket_sk": self.socket_sk, "sk_socket": self.sk_socket,
        }


#: PID_MAX_LIMIT on 64-bit (include/linux/threads.h): no more processes can exist.
PID_MAX_LIMIT = 1 << 22


def task_limit(prog: Program) -> int:
    """The most processes the task list can hold: PID_MAX_LIMIT, or memory full of task_structs."""
    return object_limit(prog, "struct task_struct", PID_MAX_LIMIT)


def task_list(prog: Program, errors: WalkErrors | None = None) -> list[int]:
    """
    Every process that can be reached on the task list (``init_task.tasks``), forwards and,
    past a break, backwards (see :func:`~drgn_ss.kernel.memory.list_reachable`), and from those
    through the process tree (:func:`tasks_by_every_route`); a break is counted as a task in
    ``errors`` (raised without them).

    :return: ``struct task_struct`` addresses
    """
    facts = kernel_facts(prog)
    link = facts.offset("struct task_struct", "tasks")
    nodes, fault = list_reachable(kernel_memory(prog), facts.symbol("init_task") + link, task_limit(prog),
                                  "task list")
    if fault is not None and prog.flags & ProgramFlags.IS_LIVE:
        # A running kernel: a task that exited under the walk broke it; walk once more, as the
        # hash chains are, rather than search the pid table (slow, and the list is whole again).
        nodes, fault = list_reachable(kernel_memory(prog), facts.symbol("init_task") + link,
                                      task_limit(prog), "task list")
        if fault is not None:
            tolerate(errors, "tasks", fault)
        return [pos - link for pos in nodes]
    if fault is None:
        return [pos - link for pos in nodes]
    tolerate(errors, "tasks", fault)
    known = [pos - link for pos in nodes]
    listed = set(known)
    known += [task for task in tasks_by_pid(prog) if task not in listed]
    return tasks_by_every_route(prog, known, errors)


#: XA_CHUNK_SHIFT (include/linux/xarray.h): 64 slots a node.
XA_CHUNK_SHIFT = 6
#: enum pid_type: the thread group id's place in struct pid's tasks and task's pid_links.
PIDTYPE_TGID = 1


def tasks_by_pid(prog: Program) -> list[int]:
    """
    Every process the initial pid namespace's table (``init_pid_ns.idr``, an xarray of
    ``struct pid``) leads to: for each pid, the tasks on its thread group list
    (``pid->tasks[PIDTYPE_TGID]``) that are their own group leader. Another route to the
    processes than the task list, for when that breaks; what cannot be read is passed over
    (the task list's break is what is counted).

    :return: ``struct task_struct`` addresses
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    N = "struct xa_node"
    o_shift, o_slots = facts.offset(N, "shift"), facts.offset(N, "slots")
    o_tgid_tasks = facts.offset("struct pid", "tasks") + 8 * PIDTYPE_TGID
    o_links = facts.offset("struct task_struct", "pid_links") + 16 * PIDTYPE_TGID  # hlist_node: 16 bytes
    o_leader = facts.offset("struct task_struct", "group_leader")
    limit = task_limit(prog)
    out: list[int] = []
    seen: set[int] = set()
    try:
        stack = [(mem.read_u64(facts.symbol("init_pid_ns")
                               + facts.offset("struct pid_namespace", "idr.idr_rt.xa_head")), 64)]
    except (FaultError, LookupError):
        return out
    while stack and len(seen) < limit:
        entry, above = stack.pop()
        if entry in seen:
            continue
        seen.add(entry)
        try:
            if entry & 3 == 2 and entry > 4096:  # xa_is_node(): a node, 2 bits of tag
                node = entry - 2
                shift = mem.read(node + o_shift, 1)[0]
                if shift >= above or shift % XA_CHUNK_SHIFT:  # each level down has a smaller shift
                    continue
                slots = memoryview(mem.read(node + o_slots, 8 << XA_CHUNK_SHIFT)).cast("Q")
                stack += [(slot, shift) for slot in slots if slot]
            elif entry and not entry & 3:  # a struct pid
                link = mem.read_u64(entry + o_tgid_tasks)
                for _ in range(64):  # a thread group's tasks, its leader among them
                    if not link or link in seen:
                        break
                    seen.add(link)
                    task = link - o_links
                    if mem.read_u64(task + o_leader) == task:
                        out.append(task)
                        break
                    link = mem.read_u64(link)
        except FaultError:
            continue
    return out


def tasks_by_every_route(prog: Program, known: list[int], errors: WalkErrors | None) -> list[int]:
    """
    Past a break in the task list, the processes that can still be reached from those
    found: through each one's place in the task list (both ways), its children, its
    siblings and its parent, every process met being walked the same way. A candidate is
    taken for a process only if it reads and is its own thread group leader
    (``group_leader``: random memory does not hold its own address there).

    :param known: ``struct task_struct`` addresses already found
    :return: those, then the others found, each once
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    T = "struct task_struct"
    o_tasks, o_children = facts.offset(T, "tasks"), facts.offset(T, "children")
    o_sibling, o_parent = facts.offset(T, "sibling"), facts.offset(T, "real_parent")
    o_leader = facts.offset(T, "group_leader")
    lo = min(o_tasks, o_children, o_sibling, o_parent, o_leader)
    span = max(o_tasks + 16, o_children + 16, o_sibling + 16, o_parent + 8, o_leader + 8) - lo
    init_task = facts.symbol("init_task")
    limit = task_limit(prog)
    out = list(known)
    seen = set(known) | {init_task}
    queue = [init_task, *known]
    while queue:
        task = queue.pop()
        try:
            buf = mem.read(task + lo, span)
        except FaultError:
            continue
        tasks_next, tasks_prev, children_next, children_prev, sibling_next, sibling_prev = (
            int.from_bytes(buf[off - lo : off - lo + 8], "little")
            for off in (o_tasks, o_tasks + 8, o_children, o_children + 8, o_sibling, o_sibling + 8))
        parent = int.from_bytes(buf[o_parent - lo : o_parent - lo + 8], "little")
        candidates = [parent]
        candidates += [link - o_tasks for link in (tasks_next, tasks_prev) if link != init_task + o_tasks]
        candidates += [link - o_sibling for link in (children_next, children_prev)
                       if link != task + o_children]  # else no children
        candidates += [link - o_sibling for link in (sibling_next, sibling_prev)
                       if link != parent + o_children]  # else the parent's list head
        for candidate in candidates:
            if candidate in seen or not 0 < candidate < 1 << 64:
                continue
            seen.add(candidate)
            try:
                if mem.read_u64(candidate + o_leader) != candidate:
                    continue
            except FaultError:
                continue
            if len(out) >= limit:
                tolerate(errors, "tasks", FaultError("more processes than the kernel could hold", candidate))
                return out
            out.append(candidate)
            queue.append(candidate)
    return out


def process_threads(prog: Program, errors: WalkErrors | None = None
                    ) -> list[tuple[int, list[tuple[int, str, int]]]]:
    """
    Every process with its threads (``signal->thread_head``, bounded and loop-checked), as
    ss -T reads /proc/PID/task: (tgid, [(tid, comm, ``struct files_struct *``)...]) in pid
    order, each process's leader first, then its other threads in creation order. A thread
    list that cannot be read is counted in ``errors`` (tasks), the threads before it kept.
    """
    L = prog_cached(prog, "task_layout", TaskLayout)
    mem = kernel_memory(prog)
    limit = task_limit(prog)
    out = []
    for leader in task_list(prog, errors):
        threads: list[tuple[int, str, int]] = []
        try:
            buf = mem.read(leader, L.thread_span)
            tgid = L.tgid.get(buf)
            threads.append((L.pid.get(buf), c_string(buf, L.comm, 16, "surrogateescape"), L.files.get(buf)))
            head = int.from_bytes(buf[L.signal : L.signal + 8], "little") + L.thread_head
            for node in list_nodes(mem, head, limit, "a thread list"):
                task = node - L.thread_node
                if task == leader:
                    continue
                t = mem.read(task, L.thread_span)
                threads.append((L.pid.get(t), c_string(t, L.comm, 16, "surrogateescape"), L.files.get(t)))
        except FaultError as e:
            tolerate(errors, "tasks", e)
            if not threads:
                continue
        out.append((tgid, threads))
    out.sort(key=lambda p: p[0])
    return out


def thread_group_leaders(prog: Program, errors: WalkErrors | None = None
                             ) -> list[tuple[int, str, int]]:
    """
    Every process (thread group leader), from ``init_task.tasks`` read raw (see
    :func:`task_list`).

    :return: (tgid, comm, ``struct files_struct *`` address) triples, in pid order.
    """
    L = prog_cached(prog, "task_layout", TaskLayout)
    mem = kernel_memory(prog)
    out = []
    for task in task_list(prog, errors):
        try:
            buf = mem.read(task, L.span)
        except FaultError as e:
            tolerate(errors, "tasks", e)
            continue
        out.append((L.tgid.get(buf), c_string(buf, L.comm, 16, "surrogateescape"), L.files.get(buf)))
    out.sort(key=lambda t: t[0])
    return out
