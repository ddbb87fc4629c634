"""Bad input to `python -m vmtests`: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from drgn_ss.commands.ss_parser import FAMILY, build_parser
from drgn_ss.selection.tables import AF_INET, AF_INET6, AF_UNIX

from vmtests.config import REPO


def vmtests(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmtests", *args], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=60)


def test_unknown_kernel_lists_the_known_ones() -> None:
    p = vmtests("run", "--kernel", "4.19", "--", "true")
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert "unknown kernel '4.19'; known kernels: 5.10, 6.1, 6.12, 7.2" in p.stderr


def test_missing_command() -> None:
    p = vmtests("run", "--kernel", "6.1")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "give a command after --" in p.stderr


def test_missing_qemu_names_the_package() -> None:
    env = {**os.environ, "PATH": "/nonexistent"}
    p = vmtests("run", "--kernel", "6.1", "--", "true", env=env)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "qemu-system-x86_64 not found: apt-get install" in p.stderr
    assert "qemu-system-x86" in p.stderr


def test_unknown_option_is_a_usage_error() -> None:
    p = vmtests("run", "--no-such-option")
    assert p.returncode == 2 and "usage:" in p.stderr


def test_help_lists_the_commands() -> None:
    p = vmtests("--help")
    assert p.returncode == 0
    for cmd in ("run", "dump", "shell", "kernels", "test", "demo"):
        assert cmd in p.stdout


def drgn_ss(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run drgn-ss; ``cache``: its facts cache (DRGN_SS_CACHE), for runs that may write one."""
    env = {**os.environ, "DRGN_SS_CACHE": str(cache)} if cache is not None else None
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "drgn-ss"), *args],
                          capture_output=True, text=True, timeout=60, env=env)


def one_line_error(p: subprocess.CompletedProcess[str], code: int) -> str:
    assert p.returncode == code, p
    assert "Traceback" not in p.stderr and not p.stdout
    return p.stderr


def test_drgn_ss_unknown_option_is_usage_exit_2() -> None:
    err = one_line_error(drgn_ss("--bogus"), 2)
    assert err.startswith("drgn-ss: unrecognized arguments: --bogus\n")


def test_drgn_ss_bad_state_name() -> None:
    assert one_line_error(drgn_ss("-t", "state", "bogus"), 2).startswith(
        "drgn-ss: wrong state name: bogus (states: established, syn-sent, syn-recv, fin-wait-1, "
        "fin-wait-2, time-wait, unconnected (or closed), close-wait, last-ack, listening, closing; "
        "groups: all, connected, synchronized, bucket, big)\nTry")
    assert one_line_error(drgn_ss("-t", "state", "a\nb\x1b[31m"), 2).startswith(
        "drgn-ss: wrong state name: a\\nb\\x1b[31m (states: ")  # one line, no terminal escape



def test_drgn_ss_bad_filter_expression_points_at_the_token() -> None:
    p = drgn_ss("-t", "sport = :22 or ( dport >", "and", ")")
    assert p.returncode == 2 and not p.stdout and "Traceback" not in p.stderr
    assert p.stderr == ("drgn-ss: bad filter: expected a port, not 'and'\n"
                        "  sport = :22 or ( dport > and )\n"
                        "                           ^^^\n"
                        "Try 'drgn-ss --help'.\n")


def test_drgn_ss_json_option_conflicts() -> None:
    assert "not allowed with argument --json" in one_line_error(drgn_ss("--json", "--ndjson"), 2)
    assert one_line_error(drgn_ss("--json", "--header"), 2).startswith(
        "drgn-ss: --header prints text before the listing: it does not go with --json")


def test_drgn_ss_not_a_core_dump(tmp_path: Path) -> None:
    f = tmp_path / "notacore"
    f.write_text("hello\n")
    assert one_line_error(drgn_ss("-c", str(f)), 1) == f"drgn-ss: cannot open {f}: not an ELF core file\n"
    assert one_line_error(drgn_ss("-c", str(tmp_path / "absent")), 1) == (
        f"drgn-ss: no such file: {tmp_path / 'absent'}\n")


def test_drgn_ss_without_kcore() -> None:
    if os.path.exists("/proc/kcore"):
        pytest.skip("this machine has /proc/kcore")
    assert "no /proc/kcore on this machine" in one_line_error(drgn_ss("-t"), 1)


SCRIPTS = ["ss.py", "ss_nlpt.py", "nethogs.py", "report.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_on_a_program_that_is_not_a_kernel(script: str) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        p = subprocess.run([os.path.join(os.path.dirname(sys.executable), "drgn"), "-q", "-p",
                            str(sleeper.pid), str(REPO / "scripts" / script)],
                           capture_output=True, text=True, timeout=60)
    finally:
        sleeper.kill()
    assert p.returncode == 1
    assert p.stderr.startswith(f"{script}: this program is not a Linux kernel"), p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_run_by_python_says_to_use_drgn(script: str) -> None:
    p = subprocess.run([sys.executable, str(REPO / "scripts" / script), "-t"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.startswith(f"{script}: a drgn script: run it with drgn (drgn scripts/{script} ")
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def _note(name: bytes, kind: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)
    return struct.pack("<III", len(name) + 1, len(desc), kind) + pad(name + b"\0") + pad(desc)


#: A VMCOREINFO drgn takes for a kernel's: it sets IS_LINUX_KERNEL and finds the page tables.
VMCOREINFO = (b"OSRELEASE=6.1.0-18-cloud-amd64\nPAGESIZE=4096\nKERNELOFFSET=0\n"
              b"SYMBOL(swapper_pg_dir)=ffffffff82000000\nNUMBER(pgtable_l5_enabled)=0\nBUILD-ID=0123abcd\n")
#: ... and one that sends drgn-ss to the kallsyms tables in memory (Linux 6.0+): reads that,
#: on an AArch64 dump with no TCR_EL1_T1SZ, drgn refuses with BadDataError.
KALLSYMS = b"".join(b"SYMBOL(%s)=ffffffff81%06x\n" % (name, i * 0x1000) for i, name in enumerate(
    (b"kallsyms_names", b"kallsyms_num_syms", b"kallsyms_token_table", b"kallsyms_token_index", b"_stext",
     b"kallsyms_offsets", b"kallsyms_relative_base")))


def elf_core(machine: int = 0x3E, info: bytes = VMCOREINFO) -> bytes:
    """A tiny ELF64 core file as a kernel dump has it: a PT_NOTE with VMCOREINFO, one PT_LOAD page."""
    notes = _note(b"VMCOREINFO", 0, info)
    note_at = 64 + 2 * 56
    load_at = note_at + len(notes)
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIQQQIHHHHHH", 4, machine, 1, 0, 64, 0, 0, 64, 56, 2, 64, 0, 0)  # ET_CORE
    phdrs = (struct.pack("<IIQQQQQQ", 4, 0, note_at, 0, 0, len(notes), 0, 4)
             + struct.pack("<IIQQQQQQ", 1, 7, load_at, 0xFFFF888000000000, 0, 4096, 4096, 4096))
    return header + phdrs + notes + bytes(4096)


def _patched(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value):]


#: Dumps drgn-ss must refuse in one line: another architecture (e_machine), or a file
#: drgn finds malformed while opening it.
BAD_DUMPS = {
    "arm": elf_core(0x28),
    "aarch64": elf_core(0xB7),
    "aarch64-kallsyms": elf_core(0xB7, VMCOREINFO + KALLSYMS),
    "arm-kallsyms": elf_core(0x28, VMCOREINFO + KALLSYMS),
    "cut-in-header": elf_core()[:40],
    "cut-in-program-headers": elf_core()[:100],
    "cut-in-notes": elf_core()[:200],
    "garbage-program-headers": _patched(elf_core(), 64, bytes(range(7, 7 + 112))),
    "program-headers-past-the-end": _patched(elf_core(), 32, struct.pack("<Q", 1 << 62)),
    "65535-program-headers": _patched(elf_core(), 56, struct.pack("<H", 0xFFFF)),
    "elfclass32": _patched(elf_core(), 4, b"\x01"),
    "big-endian": _patched(elf_core(), 5, b"\x02"),
    "empty": b"",
}


@pytest.mark.parametrize("name", BAD_DUMPS)
def test_drgn_ss_refuses_a_malformed_or_foreign_dump_in_one_line(name: str, tmp_path: Path) -> None:
    core = tmp_path / name
    core.write_bytes(BAD_DUMPS[name])
    err = one_line_error(drgn_ss("-c", str(core), "-tan", cache=tmp_path), 1)
    assert err.count("\n") == 1 and err.startswith("drgn-ss: ") and err[:-1].isprintable(), err
    if name.startswith(("arm", "aarch64")):
        assert "drgn-ss reads x86-64 kernels only" in err


def test_drgn_ss_escapes_the_dumps_release_in_its_messages(tmp_path: Path) -> None:
    """VMCOREINFO's release, quoted by the no-debug-info line, cannot reach the terminal raw
    (test_escaping checks it cannot climb out of the facts cache either, where it names a file)."""
    core = tmp_path / "core"
    core.write_bytes(elf_core(info=VMCOREINFO.replace(b"6.1.0-18-cloud-amd64", b"../../6.1\x1b[31m\x9b2J")))
    err = one_line_error(drgn_ss("-c", str(core), "-tan", cache=tmp_path), 1)
    assert err.count("\n") == 1 and err[:-1].isprintable() and "\x1b" not in err, err
    assert "linux-image-../../6.1.[31m?2J-dbg" in err


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_refuses_a_foreign_dump_in_one_line(script: str, tmp_path: Path) -> None:
    """drgn opens the AArch64 dump itself (its reads would raise BadDataError): the script
    says what it reads, in one line."""
    core = tmp_path / "core"
    core.write_bytes(BAD_DUMPS["aarch64-kallsyms"])
    p = subprocess.run([os.path.join(os.path.dirname(sys.executable), "drgn"), "-q", "-c", str(core),
                        str(REPO / "scripts" / script)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "DRGN_SS_CACHE": str(tmp_path)})
    assert one_line_error(p, 1) == (
        f"{script}: this kernel's architecture is AARCH64: drgn-ss reads x86-64 kernels only\n")


def test_plugin_refuses_a_foreign_dump_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """%ss at drgn's prompt on the AArch64 dump: exit status 1 and one line, the prompt kept."""
    import drgn
    from drgn_ss.commands.plugin import _run

    monkeypatch.setenv("DRGN_SS_CACHE", str(tmp_path))
    core = tmp_path / "core"
    core.write_bytes(BAD_DUMPS["aarch64-kallsyms"])
    prog = drgn.Program()
    prog.set_core_dump(str(core))
    assert _run(prog, ["-tan"]) == 1
    assert capsys.readouterr() == (
        "", "ss: this kernel's architecture is AARCH64: drgn-ss reads x86-64 kernels only\n")


def test_a_dump_cut_short_by_less_than_a_megabyte_says_how_much() -> None:
    from drgn_ss.commands.ss import _size_text

    assert (_size_text(4000), _size_text(3 << 20)) == ("4000 bytes", "3 MB")  # not "0 MB"

def test_the_later_of_ipv4_and_ipv6_wins() -> None:
    """ss lists (and reads a filter's addresses as) its last preferred family: ss -4 -6 is IPv6."""
    from drgn_ss.commands.ss import _selection

    parser = build_parser("drgn-ss", True)
    for argv, families in ((["-4", "-6"], (AF_INET6,)), (["-6", "-4"], (AF_INET,)),
                           (["-t64"], (AF_INET,)), (["--ipv6"], (AF_INET6,)), (["-t"], (AF_INET, AF_INET6)),
                           (["-6", "-x", "-t"], (AF_UNIX, AF_INET6))):
        args = parser.parse_args(argv)
        assert _selection(args).families == families, argv


def drgn_ss_bytes(*args: str) -> subprocess.CompletedProcess[bytes]:
    """drgn-ss with argv as the shell gives it: bytes, not necessarily UTF-8."""
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "drgn-ss"),
                           *(os.fsencode(a) for a in args)], capture_output=True, timeout=60)


@pytest.mark.parametrize("words, message", [
    (["("] * 9996 + ["sport = :22"] + [")"] * 9996, "the expression is nested too deeply for ss's parser"),
    (["not"] * 12000 + ["sport = :22"], "the expression is nested too deeply for ss's parser"),
    (["src inet6:::/0 or src 10.0.0.0/8"], "an inet prefix is expected rather than '10.0.0.0/8'"),
    (["sport = :\udcff"], "'\\udcff' does not look like a port"),
    (["src", "10.0.\udcfe.0"], "an inet prefix is expected rather than '10.0.\\udcfe.0'"),
    (["src 10.0.0.0/²"], "an inet prefix is expected rather than '10.0.0.0/²'"),
    (["dev ²"], "cannot parse device '²'"),
    (["dev", "-1"], "cannot parse device '-1'"),
    (["sport", "=", "1" * 5000], "'1111111111111111111111111111111111111111'... does not look like a port"),
    (["sport = :22 or"], "the filter ends where an expression should follow"),
    (["sport", "=", "\x1b[31m"], "'\\x1b[31m' does not look like a port"),
])
def test_drgn_ss_bad_filter_fails_before_the_kernel_is_opened(words: list[str], message: str) -> None:
    """
    Exit 2, the error on one line (then the expression with the word pointed at, and the hint
    to --help), no traceback; -c /dev/null is no kernel: had drgn-ss opened it, it would say so.
    """
    p = drgn_ss_bytes("-c", "/dev/null", "-t", "--", *words)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 2 and not p.stdout and "Traceback" not in err, err[-2000:]
    lines = err.split("\n")
    assert lines[0] == f"drgn-ss: bad filter: {message}" or lines[0].startswith(
        f"drgn-ss: bad filter: {message} ("), lines[0]
    assert len(lines) == 5 and lines[3:] == ["Try 'drgn-ss --help'.", ""], lines
    assert all(line.isprintable() and len(line) < 130 for line in lines), lines
    assert "/dev/null" not in err


@pytest.mark.parametrize("words", [
    ["not"] * 9995 + ["sport = :22"],
    ["( not"] * 4997 + ["sport = :22"] + [")"] * 4997,
    ["sport = :1"] + ["or sport = :22"] * 20000,
    ["src inet6:::/0 or src [::1]:443 and dev 0 or sport = \n22"],
])
def test_drgn_ss_deep_filter_is_parsed_then_the_kernel_opened(words: list[str]) -> None:
    """What ss takes, drgn-ss parses (no recursion) and then goes on to open the kernel."""
    p = drgn_ss_bytes("-c", "/dev/null", "-t", "--", *words)
    assert p.returncode == 1 and not p.stdout
    assert p.stderr == b"drgn-ss: cannot open /dev/null: not an ELF core file\n"


# -- issue 17: rough edges a newcomer hits ------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--tipc"], f"--tipc (TIPC sockets) is not supported yet: {FAMILY}"),
    (["-td"], f"-d (DCCP sockets) is not supported yet: {FAMILY}"),
    (["-Afoo"], '"foo" is illegal socket table id'),
    (["-f", "bar"], '"bar" is invalid family'),
    (["-N", "ns1", "--all-netns"], "-N names one namespace: it does not go with --netns or --all-netns"),
    (["-xa", "--peers"], "--peers shows the processes holding a unix socket's peer: give -p too"),
    (["-K"], "-K (close sockets) is not supported: drgn-ss reads kernel memory, it never changes it"),
])
def test_drgn_ss_names_the_ss_options_it_lacks(argv: list[str], message: str) -> None:
    err = one_line_error(drgn_ss(*argv), 2)
    assert err.startswith(f"drgn-ss: {message}") and err.count("\n") == 2, err
    assert err.endswith("\nTry 'drgn-ss --help'.\n")


#: The options iproute2 6.1's ss --help lists.
SS_HELP_OPTIONS = """
    -h -V -n -r -a -l -o -e -m -p -T -i -s -b -E -Z -z -N -4 -6 -0 -t -M -S -u -d -w -x -f -K -H -O -A -D -F
    --tipcinfo --tos --cgroup --vsock --tipc --xdp --inet-sockopt --unix --raw --packet --kill --oneline
    --query --socket --diag --filter
"""


def test_every_ss_option_is_had_or_refused_by_name() -> None:
    """ss's options (iproute2 6.1's ss --help): each is drgn-ss's, or refused in its own words."""
    from drgn_ss.commands.common import UsageError
    from drgn_ss.commands.ss_parser import NOT_SUPPORTED

    ss_options = set(SS_HELP_OPTIONS.split())
    parser = build_parser("drgn-ss", True)
    known = set(parser._option_string_actions)
    assert ss_options <= known
    refused = {flag for entry in NOT_SUPPORTED for flag in entry.flags}
    for flag in refused:
        with pytest.raises(UsageError, match=r"is not supported"):
            parser.parse_args([flag])


def test_drgn_ss_core_and_qemu_together_is_a_usage_error() -> None:
    err = one_line_error(drgn_ss("-c", "/dev/null", "--qemu", "/nonexistent", "-t"), 2)
    assert err.startswith("drgn-ss: argument --qemu: not allowed with argument -c/--core\n")


def test_drgn_ss_version() -> None:
    """drgn-ss --version: its version and drgn's, then whether the C part was built (this checkout's)."""
    import drgn
    from drgn_ss import __version__
    from drgn_ss.kernel import native

    p = drgn_ss("--version")
    c_part = "C part: built" if native._fast is not None else "C part: not built: pure Python, 2-5x slower; "
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout.startswith(f"drgn-ss {__version__} (drgn {drgn.__version__})\n{c_part}")
    assert p.stdout.count("\n") == 2
    assert drgn_ss("-V").stdout == p.stdout


def test_nethogs_version(capsys: pytest.CaptureFixture[str]) -> None:
    import drgn
    from drgn_ss import __version__
    from drgn_ss.commands.common import c_part_line
    from drgn_ss.commands.nethogs import build_parser as nethogs_parser

    with pytest.raises(SystemExit) as e:
        nethogs_parser("nethogs.py").parse_args(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"nethogs.py {__version__} (drgn {drgn.__version__})\n{c_part_line()}\n"


@pytest.mark.parametrize("record, loads, line", [
    (None, True, "C part: built"),  # a checkout: whether it imports
    (None, False, "C part: not built: pure Python, 2-5x slower; install gcc and python3-dev and reinstall"),
    ({"native": True}, True, "C part: built"),
    ({"native": False, "reason": "C compiler gcc not found"}, False,
     "C part: not built (C compiler gcc not found): pure Python, 2-5x slower; install gcc and python3-dev "
     "and reinstall"),
    ({"native": False, "reason": "a\nb\tc"}, False, "C part: not built (a b c): pure Python, 2-5x slower; "
     "install gcc and python3-dev and reinstall"),
    ({"native": True}, False, "C part: built but does not load: pure Python, 2-5x slower; install gcc and "
     "python3-dev and reinstall"),
    ("not JSON", True, "C part: built"),
    ({"native": "no"}, False, "C part: not built: pure Python, 2-5x slower; install gcc and python3-dev and "
     "reinstall"),
])
def test_version_says_whether_the_c_part_was_built(record: Any, loads: bool, line: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What the install recorded in drgn_ss/_build.json (helpers/build_fast.py); with no record,
    whether it loads."""
    import json

    from drgn_ss.commands import common
    from drgn_ss.kernel import native

    if record is not None:
        (tmp_path / native.BUILD_RECORD).write_text(record if isinstance(record, str) else json.dumps(record))
    monkeypatch.setattr(native, "_fast", native._fast if loads else None)
    monkeypatch.setattr(native, "_fast_error", "")
    monkeypatch.setattr(common, "native_build", lambda: native.native_build(str(tmp_path)))
    monkeypatch.delenv("DRGN_SS_PURE_PYTHON", raising=False)
    if loads and native._fast is None:
        pytest.skip("drgn_ss._fast is not built here")
    assert common.c_part_line() == line
    if loads:
        monkeypatch.setenv("DRGN_SS_PURE_PYTHON", "1")
        assert common.c_part_line() == line + " (not used: DRGN_SS_PURE_PYTHON=1)"


def test_drgn_ss_names_why_a_symbols_file_cannot_be_read(tmp_path: Path) -> None:
    """-s of a missing file, a directory or a file that is not ELF: the reason, before the dump is opened."""
    core = tmp_path / "core"
    core.write_bytes(elf_core())
    text = tmp_path / "vmlinux.txt"
    text.write_text("not a vmlinux\n")
    for path, reason in ((tmp_path / "absent", "no such file"), (tmp_path, "is a directory"),
                         (text, "not an ELF file")):
        assert one_line_error(drgn_ss("-c", str(core), "-s", str(path), "-tan", cache=tmp_path), 1) == (
            f"drgn-ss: -s {path}: {reason}\n")


def test_drgn_ss_names_an_unreadable_symbols_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000: test_elf_problem_permission_denied covers it")
    vmlinux = tmp_path / "vmlinux"
    vmlinux.write_bytes(b"\x7fELF")
    vmlinux.chmod(0)
    assert one_line_error(drgn_ss("-c", "/dev/null", "-s", str(vmlinux), "-t"), 1) == (
        f"drgn-ss: -s {vmlinux}: permission denied\n")


def test_elf_problem_permission_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unreadable case as root too (root reads any file): open() made to refuse."""
    from drgn_ss.commands import program

    def refuse(path: str, mode: str = "r") -> Any:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(program, "open", refuse, raising=False)
    assert program.elf_problem("/boot/vmlinux") == "permission denied"


@pytest.mark.parametrize("flags", ["t", "tan", "tulpn"])
def test_drgn_ss_says_ss_summary_is_not_dash_s(flags: str) -> None:
    """drgn-ss -c DUMP -st: ss's -s (summary) read as drgn's -s VMLINUX, said so, exit 2."""
    err = one_line_error(drgn_ss("-c", "/dev/null", f"-s{flags}"), 2)
    assert err == (f"drgn-ss: -s {flags}: no such file: in drgn-ss, -s names the vmlinux (as in drgn); "
                   "ss's summary is --summary\nTry 'drgn-ss --help'.\n")


@pytest.mark.parametrize("option", ["--version", "--help"])
def test_drgn_ss_says_when_stdout_is_full(option: str) -> None:
    """stdout on /dev/full (ENOSPC): one line, exit 1, no traceback (argparse would say nothing, exit 0)."""
    with open("/dev/full", "w") as full:
        p = subprocess.run([os.path.join(os.path.dirname(sys.executable), "drgn-ss"), option], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=60)
    assert (p.returncode, p.stderr) == (1, "drgn-ss: cannot write output: No space left on device\n")


class FailingOutput:
    """An output whose writes fail as a disk's or a terminal's can (EIO)."""

    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_a_write_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """The listing's and nethogs' writes (:func:`write_output`) through exit_status, which both use."""
    from drgn_ss.commands.common import exit_status, write_output

    def main() -> int:
        write_output(FailingOutput(), ["sockets\n"])  # type: ignore[arg-type]
        return 0

    assert exit_status("drgn-ss", main) == 1
    assert capsys.readouterr() == ("", "drgn-ss: cannot write output: Input/output error\n")


def test_nethogs_write_error_is_an_output_error() -> None:
    import argparse

    from drgn_ss.commands.common import OutputError
    from drgn_ss.commands.nethogs import _show
    from drgn_ss.kernel.damage import WalkErrors
    from drgn_ss.output.nethogs import Stamp
    from drgn_ss.traffic import Sample

    sample = Sample(when=0.0, walk_s=0.0, connections={}, owners={}, cpu_s=0.0, owners_walked=False,
                    errors=WalkErrors())
    args = argparse.Namespace(json=True, by="process")
    with pytest.raises(OutputError, match="cannot write output: Input/output error"):
        _show(sample, None, Stamp("-", None), args, FailingOutput(), False)  # type: ignore[arg-type]


def test_stats_says_whether_the_c_path_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    """--stats' "native": the C extension where it is built, not with DRGN_SS_PURE_PYTHON=1."""
    from drgn_ss.commands.common import native_path
    from drgn_ss.kernel import native

    monkeypatch.setenv("DRGN_SS_PURE_PYTHON", "1")
    assert native_path() is False
    monkeypatch.delenv("DRGN_SS_PURE_PYTHON")
    assert native_path() is (native._fast is not None)
    monkeypatch.setattr(native, "_fast", None)  # not built
    assert native_path() is False


# -- -s VMLINUX on a warm facts cache: checked by build ID, its DWARF loaded only on a miss ----------

def _warm_cache(cache: Path, build_id: str, sections: dict[str, dict[str, Any]]) -> None:
    """A facts cache holding ``sections`` for the build of :func:`_build_core`'s kernel."""
    import json

    from drgn_ss.kernel.facts_file import source_hash

    (cache / "facts").mkdir(parents=True, mode=0o700)
    (cache / "facts" / f"{build_id}-{source_hash()}.json").write_text(json.dumps(
        {"build_id": build_id, "release": "6.1.0-18-cloud-amd64", **sections}))


def _build_core(tmp_path: Path, build_id: str) -> str:
    """The tiny ELF dump, its VMCOREINFO naming ``build_id``."""
    core = tmp_path / "core"
    info = VMCOREINFO.replace(b"BUILD-ID=0123abcd", b"BUILD-ID=" + build_id.encode())
    core.write_bytes(elf_core(info=info))
    return str(core)


def _open(core: str, *symbols: str) -> Any:
    import argparse

    from drgn_ss.commands import program

    return program.open_program(argparse.Namespace(core=core, symbols=list(symbols), qemu=None))


def test_symbols_of_the_kernels_build_wait_for_a_missing_fact(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """
    -s of a file whose build ID is the kernel's, on a cache with facts from that build's DWARF:
    not loaded at open; those facts alone are used (not the live kernel's); a fact not there
    loads it (this vmlinux has no DWARF: one line says so, naming it).
    """
    from drgn_ss.commands.common import Failure
    from drgn_ss.kernel.facts import kernel_facts

    from tests.test_facts import BUILD_ID, tiny_vmlinux

    monkeypatch.setenv("DRGN_SS_CACHE", str(tmp_path / "cache"))
    _warm_cache(tmp_path / "cache", BUILD_ID, {"dwarf": {"offset:struct sock:sk_b": 4},
                                                "live": {"size:struct sock": 16}})
    vmlinux = tiny_vmlinux(tmp_path / "vmlinux", BUILD_ID, 250)
    prog = _open(_build_core(tmp_path, BUILD_ID), vmlinux)
    facts = kernel_facts(prog)
    assert facts.offset("struct sock", "sk_b") == 4 and not facts.loaded_debug_info
    with pytest.raises(Failure) as e:
        facts.size("struct sock")  # only in the live section: DWARF is loaded for it
    assert str(e.value) == (f"{vmlinux} is the vmlinux of kernel 6.1.0-18-cloud-amd64 (build ID {BUILD_ID}) "
                            "but has no debug info: give the one with DWARF "
                            "(linux-image-6.1.0-18-cloud-amd64-dbg)")


@pytest.mark.parametrize("case", ["no dwarf facts", "kernel build ID unreadable"])
def test_symbols_are_loaded_at_once_unless_their_build_id_and_facts_say_so(
        case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    No facts from the build's DWARF cached, or a VMCOREINFO whose BUILD-ID is not one drgn-ss
    takes (0123abcd: too short to name a cache file, as a damaged one): loaded, so checked by
    drgn, as the kernel is opened.
    """
    from drgn_ss.commands.common import Failure

    from tests.test_facts import BUILD_ID, tiny_vmlinux

    monkeypatch.setenv("DRGN_SS_CACHE", str(tmp_path / "cache"))
    section = "live" if case == "no dwarf facts" else "dwarf"
    _warm_cache(tmp_path / "cache", BUILD_ID, {section: {"offset:struct sock:sk_b": 4}})
    core = _build_core(tmp_path, BUILD_ID if case == "no dwarf facts" else "0123abcd")
    with pytest.raises(Failure, match="no debug info" if case == "no dwarf facts" else "does not match"):
        _open(core, tiny_vmlinux(tmp_path / "vmlinux", BUILD_ID, 250))


def test_symbols_of_another_build_fail_at_once_on_a_warm_cache(tmp_path: Path) -> None:
    """A vmlinux of another build, the cache warm: the one-line error naming both build IDs, exit 1."""
    from tests.test_facts import BUILD_ID, OTHER_BUILD_ID, tiny_vmlinux

    _warm_cache(tmp_path / "cache", BUILD_ID, {"dwarf": {"offset:struct sock:sk_b": 4}})
    vmlinux = tiny_vmlinux(tmp_path / "vmlinux", OTHER_BUILD_ID, 250)
    p = drgn_ss("-c", _build_core(tmp_path, BUILD_ID), "-s", vmlinux, "-tan", cache=tmp_path / "cache")
    assert one_line_error(p, 1) == (
        f"drgn-ss: {vmlinux} (build ID {OTHER_BUILD_ID}) does not match kernel 6.1.0-18-cloud-amd64 "
        f"(build ID {BUILD_ID}): give the vmlinux of that exact build "
        "(linux-image-6.1.0-18-cloud-amd64-dbg)\n")


def test_filter_file_lines_follow_the_command_line(tmp_path: Path) -> None:
    """-F FILE: its lines after the command line's words, # and 0 lines skipped, as ss's lexer."""
    from drgn_ss.commands.ss import _selection

    path = tmp_path / "filter"
    path.write_text("( sport = :22\n# a comment\n0 skipped\n or dport = :80 )\n")
    args = build_parser("drgn-ss", True).parse_args(["-t", "-F", str(path)])
    expr = _selection(args).expr
    assert expr is not None and [c.what for c in expr.conditions()] == ["src", "dst"]
    args = build_parser("drgn-ss", True).parse_args(["-t", "-F", str(path), "not", "src", "10.0.0.1", "and"])
    expr = _selection(args).expr
    assert expr is not None and len(expr.conditions()) == 3
    path.write_text("x" * 1100 + "\n")
    with pytest.raises(Exception, match="Too long line in filter"):
        _selection(build_parser("drgn-ss", True).parse_args(["-t", "-F", str(path)]))
