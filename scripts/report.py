"""What is wrong with a kernel's sockets: ``drgn scripts/report.py [--all-netns] [--json]``, the
triage report of ``drgn-ss --report`` (``--help`` lists the options).

Works on every program drgn opens: the live kernel, ``drgn -c VMCORE -s VMLINUX``
and ``drgn --qemu QMP_SOCKET -s VMLINUX``.
"""

import sys

from drgn_ss.commands.common import not_run_by_drgn
from drgn_ss.commands.ss import run

if __name__ == "__main__":
    if "prog" not in globals():  # drgn runs a script with its program as ``prog``
        sys.exit(not_run_by_drgn("report.py"))
    sys.exit(run(globals()["prog"], ["--report", *sys.argv[1:]], prog_name="report.py"))
