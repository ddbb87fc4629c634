"""Print what ``ss -nlpt`` prints, read from kernel memory: ``drgn scripts/ss_nlpt.py``.

Works on every program drgn opens: the live kernel, ``drgn -c VMCORE -s VMLINUX``
and ``drgn --qemu QMP_SOCKET -s VMLINUX``.
"""

import sys

from drgn_ss.commands.common import not_run_by_drgn
from drgn_ss.commands.ss import run

if __name__ == "__main__":
    if "prog" not in globals():  # drgn runs a script with its program as ``prog``
        sys.exit(not_run_by_drgn("ss_nlpt.py"))
    sys.exit(run(globals()["prog"], ["-nlpt", *sys.argv[1:]], prog_name="ss_nlpt.py"))
