"""Per-process network traffic from kernel counters: ``drgn scripts/nethogs.py [--interval S]
[--count N] [--json] [--all-netns] [--by connection] [--verbose]`` (``--help`` says more).

Works on the live kernel (rates) and on ``drgn -c VMCORE -s VMLINUX`` (cumulative bytes).
"""

import sys

from drgn_ss.commands.common import not_run_by_drgn
from drgn_ss.commands.nethogs import run

if __name__ == "__main__":
    if "prog" not in globals():  # drgn runs a script with its program as ``prog``
        sys.exit(not_run_by_drgn("nethogs.py"))
    sys.exit(run(globals()["prog"], sys.argv[1:]))
