"""ss(8) from kernel memory: ``drgn scripts/ss.py [OPTIONS] [FILTER]`` (``--help`` lists them).

Works on every program drgn opens: the live kernel, ``drgn -c VMCORE -s VMLINUX``
and ``drgn --qemu QMP_SOCKET -s VMLINUX``.
"""

import sys

from drgn_ss.cli import run

if __name__ == "__main__":
    sys.exit(run(prog, sys.argv[1:], prog_name="ss.py"))  # type: ignore[name-defined]  # noqa: F821
