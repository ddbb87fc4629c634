"""Socket churn for the reliability and nethogs tests: ``tests/kernel/churn_fast.c``, built in
the guest with gcc (one of the guest's test packages), started in its own process group.

Python cannot churn fast enough in a TCG guest (a few connections a second); the C churn
makes thousands of TCP connections and UDP sockets a second there.
"""

from __future__ import annotations

import os
import signal
import subprocess

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "churn_fast.c")


class Churn:
    """churn_fast running: :attr:`port` is its TCP server's; :meth:`stop` ends it."""

    def __init__(self, tmp: str, tcp_clients: int, udp_churners: int = 0) -> None:
        binary = os.path.join(tmp, "churn_fast")
        subprocess.run(["gcc", "-O2", "-o", binary, SOURCE], check=True)
        self.proc = subprocess.Popen([binary, str(tcp_clients), str(udp_churners)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout
        ready = self.proc.stdout.readline().split()
        if ready[:1] != ["READY"]:
            self.stop()
            raise AssertionError(f"churn_fast did not start: {ready}")
        self.port = int(ready[1])

    def stop(self) -> tuple[int, int]:
        """End the churn; return the TCP connections and the UDP sockets it made."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        made = out.split()
        return (int(made[1]), int(made[2])) if made[:1] == ["MADE"] else (0, 0)
