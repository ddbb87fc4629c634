"""Traffic with known volumes, for the nethogs tests: ``python traffic_gen.py PLAN``.

Starts a sink process ("tg-sink") that accepts connections on 127.0.0.1 and reads
everything, and one sender process per entry of PLAN (``NAME:BYTES:SECONDS``), each named
NAME, that connects to the sink and sends BYTES evenly over SECONDS (paced by a clock, in
writes of up to 64 KiB, 64 a second at least; 0 bytes: an idle connection), then keeps its
connection open. Prints
``READY PORT PID...`` (the sink's port, then the senders' pids in PLAN order) once every
connection is up, waits for a line on stdin, then lets the senders go; prints ``DONE NAME
SECONDS`` as each sender finishes (the seconds it really took: a starved sender falls behind
its pace), and runs until killed (SIGTERM stops the group).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time

CHUNK = 64 * 1024


def set_name(name: str) -> None:
    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME


def sink(lst: socket.socket) -> None:
    set_name("tg-sink")

    def drain(conn: socket.socket) -> None:
        while conn.recv(1 << 20):
            pass

    while True:
        conn, _ = lst.accept()
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


def sender(name: str, port: int, total: int, seconds: float, go: int) -> None:
    set_name(name)
    conn = socket.create_connection(("127.0.0.1", port))
    os.write(go, b"c")  # connected
    os.read(go_read, 1)  # everyone starts together
    start = time.monotonic()
    sent = 0
    # At least 64 writes a second, so that a second's worth is not a handful of big writes.
    chunk = max(1024, min(CHUNK, int(total / seconds / 64))) if total else CHUNK
    data = b"z" * chunk
    while sent < total:
        n = min(chunk, total - sent)
        due = start + seconds * (sent + n) / total
        time.sleep(max(due - time.monotonic(), 0))
        conn.sendall(data[:n])
        sent += n
    # One write(2) of a line shorter than PIPE_BUF: the senders share the pipe, and a line
    # that print() split over two writes could interleave with another sender's.
    os.write(1, f"DONE {name} {time.monotonic() - start:.3f}\n".encode())
    signal.pause()


def main() -> int:
    os.setpgrp()
    plan = [entry.split(":") for entry in sys.argv[1:]]
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    port = lst.getsockname()[1]
    if os.fork() == 0:
        sink(lst)
        os._exit(0)
    global go_read
    ready_r, ready_w = os.pipe()
    go_read, go_write = os.pipe()
    pids = []
    for name, total, seconds in plan:
        pid = os.fork()
        if pid == 0:
            try:
                sender(name, port, int(total), float(seconds), ready_w)
            finally:
                os._exit(0)
        pids.append(pid)
    for _ in plan:
        os.read(ready_r, 1)
    time.sleep(0.5)  # the sampler's first look sees every connection idle
    print("READY", port, *pids, flush=True)
    sys.stdin.readline()  # the test says when
    os.write(go_write, b"g" * len(plan))
    signal.pause()
    return 0


go_read = -1

if __name__ == "__main__":
    sys.exit(main())
