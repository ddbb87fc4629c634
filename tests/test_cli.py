"""Bad input to `python -m vmtests`: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from drgn_ss.cli import build_parser

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


def drgn_ss(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "drgn-ss"), *args],
                          capture_output=True, text=True, timeout=60)


def one_line_error(p: subprocess.CompletedProcess[str], code: int) -> str:
    assert p.returncode == code, p
    assert "Traceback" not in p.stderr and not p.stdout
    return p.stderr


def test_drgn_ss_unknown_option_is_usage_exit_2() -> None:
    err = one_line_error(drgn_ss("--bogus"), 2)
    assert err.startswith("drgn-ss: unrecognized arguments: --bogus\n")


def test_drgn_ss_bad_state_name() -> None:
    assert one_line_error(drgn_ss("-t", "state", "bogus"), 2).startswith(
        "drgn-ss: wrong state name: bogus\n")
    assert one_line_error(drgn_ss("-t", "state", "a\nb\x1b[31m"), 2).startswith(
        "drgn-ss: wrong state name: a\\nb\\x1b[31m\n")  # one line, no terminal escape



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


SCRIPTS = ["ss.py", "ss_nlpt.py", "nethogs.py"]


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


def test_the_later_of_ipv4_and_ipv6_wins() -> None:
    """ss lists (and reads a filter's addresses as) its last preferred family: ss -4 -6 is IPv6."""
    parser = build_parser("drgn-ss", True)
    for argv, ipv4, ipv6 in ((["-4", "-6"], False, True), (["-6", "-4"], True, False),
                             (["-t64"], True, False), (["--ipv6"], False, True), ([], False, False)):
        args = parser.parse_args(argv)
        assert (args.ipv4, args.ipv6) == (ipv4, ipv6), argv


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
