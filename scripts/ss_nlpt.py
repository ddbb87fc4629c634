"""Print what ``ss -nlpt`` prints, read from kernel memory: ``drgn scripts/ss_nlpt.py``.

Works on every program drgn opens: the live kernel, ``drgn -c VMCORE -s VMLINUX``
and ``drgn --qemu QMP_SOCKET -s VMLINUX``.
"""

import sys

from drgn_ss.cli import run

if __name__ == "__main__":
    sys.exit(run(prog, ["-nlpt", *sys.argv[1:]], prog_name="ss_nlpt.py"))  # type: ignore[name-defined]  # noqa: F821
