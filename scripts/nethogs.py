"""Per-process network traffic from kernel counters: ``drgn scripts/nethogs.py [--interval S]
[--count N] [--json] [--all-netns] [--by connection] [--verbose]`` (``--help`` says more).

Works on the live kernel (rates) and on ``drgn -c VMCORE -s VMLINUX`` (cumulative bytes).
"""

import sys

from drgn_ss.nethogs import run

if __name__ == "__main__":
    sys.exit(run(prog, sys.argv[1:]))  # type: ignore[name-defined]  # noqa: F821
