"""The agents' output with the real agents, in the guest: Debian's promtool checks the textfile
and Debian's node_exporter serves it; Debian's zabbix_agentd runs the repo's UserParameter
file (scripts/fleet/drgn-ss-zabbix.conf). Values are held against what the workload made
(tests/kernel/listen_queues.py's listeners and queues), ss in the same guest, and the
sysctls; counters against a transfer of a known size and a churn of short connections."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from drgn_ss.kernel.strings import escape_name
from prometheus_client.parser import text_string_to_metric_families

from tests.kernel.conftest import Target
from tests.kernel.guest_commands import tools_env

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRGN_SS = os.path.join(os.path.dirname(sys.executable), "drgn-ss")
ZABBIX_CONF = os.path.join(REPO, "scripts", "fleet", "drgn-ss-zabbix.conf")
NODE_EXPORTER_PORT = 9100
ZABBIX_PORT = 10050
CLONE_NEWNET = 0x40000000


@pytest.fixture(scope="module")
def env(target: Target, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """
    This process's environment with Debian's agents (vmtests.guest_tools) and drgn-ss on
    PATH, and a facts cache drgn-ss can write (the guest's is read-only: a warning a run).
    """
    if target.kind != "live":
        pytest.skip("runs the agents beside a running kernel")
    if os.environ.get("DRGN_SS_MODE") and os.environ.get("DRGN_SS_AGENTS") != "1":
        pytest.skip("the matrix runs the agents on the kernels of vmtests.matrix.AGENT_KERNELS only")
    from vmtests.guest_tools import tools_dir

    root = tools_dir() / "root"
    env = tools_env(str(root) if root.is_dir() else None)
    env["PATH"] = os.path.dirname(sys.executable) + ":" + env["PATH"]
    env["DRGN_SS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    for tool in ("promtool", "prometheus-node-exporter", "zabbix_agentd"):
        if not shutil.which(tool, path=env["PATH"]):
            pytest.fail(f"{tool} is not in the guest tools (vmtests.guest_tools.GUEST_TOOLS)")
    return env


def _drgn_ss(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DRGN_SS, *args], capture_output=True, text=True, env=env, timeout=300)


def _metrics(text: str) -> dict[str, list[Any]]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _one(samples: list[Any], **labels: str) -> float:
    found = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (labels, samples[:5])
    return float(found[0])


@pytest.fixture(scope="module")
def textfile(env: dict[str, str], workload: dict[str, Any],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One sample of the workload's sockets: the file's path and text."""
    directory = str(tmp_path_factory.mktemp("textfile"))
    path = os.path.join(directory, "drgn_ss.prom")
    p = _drgn_ss(env, "--prometheus", path, "--prometheus-label", "host=guest")
    assert p.returncode in (0, 3) and (p.returncode == 0 or "partial" in p.stderr), p.stderr
    with open(path) as f:
        yield path, f.read()


def test_promtool_passes(env: dict[str, str], textfile: tuple[str, str]) -> None:
    """promtool check metrics (Debian's prometheus package) finds nothing to say of the file."""
    p = subprocess.run(["promtool", "check", "metrics"], input=textfile[1], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), (p.stdout, p.stderr)


def test_values_are_the_workloads(textfile: tuple[str, str], workload: dict[str, Any]) -> None:
    """The listeners the workload filled, ss's listeners, and the sysctls, as the file has them."""
    got = _metrics(textfile[1])
    truth = workload["listen_queues"]
    ns = str(truth["netns_inode"])
    defer = {"netns": ns, "process": "ss-queues", "pid": str(truth["pid"]),
             "local": f"127.0.0.1:{truth['defer']['port']}"}
    assert _one(got["drgn_ss_listen_queue_length"], **defer) == len(truth["defer"]["waiting"])
    assert _one(got["drgn_ss_listen_syn_queue_length"], **defer) == len(truth["defer"]["syn_recv"])
    assert _one(got["drgn_ss_listen_queue_max"], **defer) == truth["defer"]["backlog"]
    close_wait = _one(got["drgn_ss_sockets"], netns=ns, process="ss-queues", netid="tcp", state="CLOSE-WAIT")
    assert close_wait == len(truth["report"]["close_wait"]["sockets"]), truth["report"]["close_wait"]
    init = str(os.stat("/proc/self/ns/net").st_ino)
    listening = subprocess.run(["ss", "-Htln"], capture_output=True, text=True, check=True).stdout
    mine = [s.value for s in got["drgn_ss_sockets"] if s.labels["netns"] == init
            and s.labels["netid"] == "tcp" and s.labels["state"] == "LISTEN"]
    assert sum(mine) == len(listening.splitlines())
    assert all(s.labels["host"] == "guest" for samples in got.values() for s in samples)
    with open("/proc/sys/net/ipv4/tcp_max_tw_buckets") as f:
        assert _one(got["drgn_ss_time_wait_limit"], netns=init) == int(f.read())
    with open("/proc/sys/net/ipv4/tcp_mem") as f:
        low, pressure, high = map(int, f.read().split())
    for level, value in (("min", low), ("pressure", pressure), ("max", high)):
        assert _one(got["drgn_ss_memory_limit_pages"], proto="tcp", level=level) == value


def test_node_exporter_serves_the_file(env: dict[str, str], textfile: tuple[str, str]) -> None:
    """node_exporter's textfile collector serves every sample of the file, and no error."""
    path, text = textfile
    exporter = subprocess.Popen(_private(
        ["prometheus-node-exporter", "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={os.path.dirname(path)}",
         f"--web.listen-address=127.0.0.1:{NODE_EXPORTER_PORT}"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        served = _scrape(f"http://127.0.0.1:{NODE_EXPORTER_PORT}/metrics", exporter)
    finally:
        exporter.terminate()
        exporter.wait(30)
    got = _metrics(served)
    assert _one(got["node_textfile_scrape_error"]) == 0
    for name, samples in _metrics(text).items():
        assert sorted(map(_key, got.get(name, []))) == sorted(map(_key, samples)), name


def _key(sample: Any) -> tuple[str, tuple[tuple[str, str], ...], float]:
    return sample.name, tuple(sorted(sample.labels.items())), sample.value


def _private(argv: list[str]) -> list[str]:
    """
    ``argv`` in a network namespace of its own, loopback up: the agents' connections leave
    no TIME-WAIT in the test's namespace (the other tests compare its listings with ss's).
    """
    return ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


def _in_netns_of(pid: int, func: Callable[[], Any]) -> Any:
    """``func()`` run in a child process in the network namespace of process ``pid``."""
    import ctypes
    import pickle

    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            data = pickle.dumps((True, func()))
        except BaseException as e:
            data = pickle.dumps((False, f"{type(e).__name__}: {e}"))
        try:
            _write_all(w, data)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        ok, value = pickle.loads(f.read())
    os.waitpid(child, 0)
    if not ok:
        raise OSError(value)
    return value


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return str(r.read().decode())


def _scrape(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(_in_netns_of(process.pid, lambda: _fetch(url)))
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                err = process.stderr.read().decode() if process.stderr else ""
                raise AssertionError(f"{url}: no answer ({err[-500:]})") from None
            time.sleep(0.5)


#: The transfer counted, and the churn that must show up as unattributed bytes.
TRANSFER = 4_000_000
CHURN, CHURN_BYTES = 100, 20_000


def test_counters_of_a_transfer_and_of_a_churn(env: dict[str, str], tmp_path: Any) -> None:
    """
    Two samples around a transfer of known size give the process's bytes within 2%, both
    ways; a churn of short connections between two samples (none of them sampled) shows up
    in the namespace's unattributed bytes, and not in the process's.
    """
    path = str(tmp_path / "drgn_ss.prom")
    mover = subprocess.Popen([sys.executable, "-m", "tests.kernel.fleet_traffic"], cwd=REPO, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert mover.stdin is not None and mover.stdout is not None
    try:
        import json

        who = json.loads(mover.stdout.readline())
        labels = {"netns": str(who["netns"]), "process": "ss-fleet", "pid": str(who["pid"])}

        def sample() -> dict[str, list[Any]]:
            p = _drgn_ss(env, "--prometheus", path)
            assert p.returncode in (0, 3), p.stderr
            with open(path) as f:
                return _metrics(f.read())

        def tell(command: str) -> None:
            assert mover.stdin is not None and mover.stdout is not None
            mover.stdin.write(command + "\n")
            mover.stdin.flush()
            assert mover.stdout.readline().strip() == "done"

        def moved(before: dict[str, list[Any]], after: dict[str, list[Any]], name: str, **more: str) -> float:
            return _one(after[name], **labels, **more) - _one(before[name], **labels, **more)

        first = sample()
        tell(f"send {TRANSFER}")
        second = sample()
        for name in ("drgn_ss_process_sent_bytes", "drgn_ss_process_received_bytes"):
            assert abs(moved(first, second, name) - TRANSFER) <= TRANSFER * 0.02, name
        tell(f"churn {CHURN} {CHURN_BYTES}")
        third = sample()
        ns = {"netns": labels["netns"], "direction": "in"}
        lost = _one(third["drgn_ss_netns_unattributed_bytes"], **ns) - _one(
            second["drgn_ss_netns_unattributed_bytes"], **ns)
        assert lost >= CHURN * CHURN_BYTES, lost
        assert moved(second, third, "drgn_ss_process_received_bytes") < CHURN * CHURN_BYTES * 0.01
    finally:
        mover.stdin.close()
        mover.wait(60)


def _agent_conf(directory: str) -> str:
    path = os.path.join(directory, "zabbix_agentd.conf")
    with open(path, "w") as f:
        # Timeout: the TCG guest runs drgn-ss 10-20x slower than a host does (docs/fleet.md).
        f.write(f"LogType=file\nLogFile={directory}/agent.log\nPidFile={directory}/agent.pid\n"
                f"Server=127.0.0.1\nListenIP=127.0.0.1\nListenPort={ZABBIX_PORT}\nStartAgents=2\n"
                f"AllowRoot=1\nTimeout=30\nHostname=guest\nInclude={ZABBIX_CONF}\n")
    return path


def _ss_rows() -> set[tuple[str, ...]]:
    """ss -tanp's listeners and established connections: (state, laddr, lport, raddr, rport, proc, pid)."""
    import re

    out = subprocess.run(["ss", "-Htanp", "state", "established", "state", "listening"], capture_output=True,
                         text=True, check=True, errors="surrogateescape").stdout
    rows: set[tuple[str, ...]] = set()
    # A line per socket, but for a process name with a newline in it (the workload's hostile one:
    # Debian 12's ss prints names raw): such a line goes on on the next.
    for line in re.split(r"\n(?=LISTEN |ESTAB )", out.strip()):
        fields = line.split()
        user = re.search(r'users:\(\("(.*?)",pid=(\d+),', line, re.DOTALL)
        name = escape_name(user[1]) if user else ""  # as drgn-ss escapes it
        rows.add((fields[0], *_split(fields[3]), *_split(fields[4]), name, user[2] if user else ""))
    return rows


def _split(endpoint: str) -> tuple[str, str]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]").split("%")[0], "0" if port == "*" else port


def test_zabbix_agent_runs_the_userparameters(env: dict[str, str], workload: dict[str, Any],
                                             tmp_path: Any) -> None:
    """
    zabbix_agentd -t with the repo's UserParameter file gives discovery JSON that lists
    exactly ss -tanp's listeners and established connections here with their processes, and
    the workload's in its namespace; the running agent answers items over loopback (the
    zabbix_utils library speaks its protocol) with ss's counts and the workload's queues.
    """
    import json

    from zabbix_utils import Getter  # type: ignore[import-untyped]

    conf = _agent_conf(str(tmp_path))
    p = subprocess.run(["zabbix_agentd", "-c", conf, "-t", "drgn-ss.discovery[connections]"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "[t|" in p.stdout, (p.stdout, p.stderr)
    ours = _ss_rows()
    rows = json.loads(p.stdout[p.stdout.index("[t|") + 3 : p.stdout.rindex("]")])["data"]
    init = str(os.stat("/proc/self/ns/net").st_ino)
    macros = ("{#STATE}", "{#LADDR}", "{#LPORT}", "{#RADDR}", "{#RPORT}", "{#PROC}", "{#PID}")
    got = {tuple(r[m] for m in macros) for r in rows if r["{#NETNS}"] == init}
    # Debian 12's ss reads a name from /proc/PID/stat and cuts it at its first ")": the
    # workload's hostile name ('a\nb\x1b[31mc"é)e') is longer in the kernel.
    named = {row[:5] + row[6:]: row[5] for row in got}
    by_ss = {row[:5] + row[6:]: row[5] for row in ours}
    assert named.keys() == by_ss.keys(), f"discovery only: {named.keys() - by_ss.keys()}; ss only: " \
        f"{by_ss.keys() - named.keys()}"
    assert all(named[k] == name or (name + ")") in named[k] for k, name in by_ss.items()), (named, by_ss)
    truth = workload["listen_queues"]
    queues_ns = {r["{#LPORT}"]: r for r in rows if r["{#NETNS}"] == str(truth["netns_inode"])
                 and r["{#STATE}"] == "LISTEN"}
    assert queues_ns[str(truth["defer"]["port"])]["{#PROC}"] == "ss-queues"
    agent = subprocess.Popen(_private(["zabbix_agentd", "-c", conf, "-f"]), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)

    def get(key: str) -> int:
        """The running agent's value of ``key``, asked from its namespace with zabbix_utils."""
        def ask() -> tuple[Any, Any]:
            value = Getter(host="127.0.0.1", port=ZABBIX_PORT, timeout=60).get(key)
            return value.error, value.value

        error, value = _in_netns_of(agent.pid, ask)
        assert error is None, (key, error)
        return int(value)

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _in_netns_of(agent.pid, lambda: socket.create_connection(("127.0.0.1", ZABBIX_PORT),
                                                                         5).close())
                break
            except OSError:
                assert time.monotonic() < deadline and agent.poll() is None, "the agent did not start"
                time.sleep(0.5)
        listening = len(subprocess.run(["ss", "-Htln"], capture_output=True, text=True,
                                       check=True).stdout.splitlines())
        # every namespace's: ss's here, and the workload's other namespaces' listeners
        assert get("drgn-ss.get[sockets,tcp,LISTEN]") >= listening
        assert get(f"drgn-ss.get[accept_queue,{truth['defer']['port']}]") == len(truth["defer"]["waiting"])
        assert get(f"drgn-ss.get[syn_queue,{truth['defer']['port']}]") == len(truth["defer"]["syn_recv"])
        with open("/proc/sys/net/ipv4/tcp_max_orphans") as f:
            assert get("drgn-ss.get[orphans_max]") == int(f.read())
    finally:
        agent.terminate()
        agent.wait(30)


@pytest.fixture
def small_dir(tmp_path: Any) -> Iterator[str]:
    """A tmpfs of 512 KB: a textfile directory that can fill up and be made read-only."""
    path = str(tmp_path / "textfile")
    os.mkdir(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=False)


def _refused(env: dict[str, str], path: str, old: str, why: str) -> None:
    """--prometheus PATH fails in one line naming ``why``, exit 1, and leaves ``old`` as it was."""
    p = _drgn_ss(env, "--prometheus", path)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and why in p.stderr, p.stderr
    with open(path) as f:
        assert f.read() == old
    left = [n for n in os.listdir(os.path.dirname(path)) if n.startswith("drgn_ss.prom.")]
    assert left in ([], ["drgn_ss.prom.state"]), left  # no temporary file stays


def test_bad_targets_leave_the_last_file(env: dict[str, str], workload: dict[str, Any],
                                         small_dir: str) -> None:
    """
    A metric name another file of the directory has, a full disk, a read-only directory and
    a missing one: one line each, exit 1, the last file intact.
    """
    path = os.path.join(small_dir, "drgn_ss.prom")
    assert _drgn_ss(env, "--prometheus", path).returncode in (0, 3)
    with open(path) as f:
        old = f.read()
    other = os.path.join(small_dir, "other.prom")
    with open(other, "w") as f:
        f.write("# TYPE drgn_ss_sockets gauge\ndrgn_ss_sockets 1\n")
    _refused(env, path, old, "a metric name clash: drgn_ss_sockets")
    os.unlink(other)
    filler = os.path.join(small_dir, "filler")
    with open(filler, "wb", buffering=0) as f, pytest.raises(OSError):
        while True:
            f.write(b"\0" * 4096)
    _refused(env, path, old, "No space left on device")
    os.unlink(filler)
    subprocess.run(["mount", "-o", "remount,ro", small_dir], check=True)
    _refused(env, path, old, "is not writable")
    p = _drgn_ss(env, "--prometheus", os.path.join(small_dir, "gone", "drgn_ss.prom"))
    assert p.returncode == 1 and "no directory" in p.stderr, p.stderr


def test_interval_keeps_one_program_and_stops_when_told(env: dict[str, str], workload: dict[str, Any],
                                                        tmp_path: Any) -> None:
    """
    --interval rewrites the file each interval from one process (its samples counted in
    the state), --count stops it, and SIGTERM ends it after the file it is writing (exit 0
    or 3, the file whole).
    """
    import json
    import signal

    path = str(tmp_path / "drgn_ss.prom")
    p = _drgn_ss(env, "--prometheus", path, "--interval", "0.5", "--count", "3")
    assert p.returncode in (0, 3), p.stderr
    with open(path + ".state") as f:
        assert json.load(f)["samples"] == 3
    runner = subprocess.Popen([DRGN_SS, "--prometheus", path, "--interval", "0.5"], env=env,
                              stderr=subprocess.PIPE, text=True)
    before = os.stat(path).st_mtime_ns
    deadline = time.monotonic() + 120
    while os.stat(path).st_mtime_ns == before:
        assert time.monotonic() < deadline and runner.poll() is None, "no file was written"
        time.sleep(0.2)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(120) in (0, 3), runner.stderr.read() if runner.stderr else ""
    with open(path) as f:
        assert "drgn_ss_sample_partial" in f.read()  # the last family: the file is whole
