"""A minimal client for the QEMU Machine Protocol over a Unix socket."""

from __future__ import annotations

import json
import socket
from typing import Any

from vmtests import VMTestError


class QMP:
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        while True:
            line = self.file.readline()
            if not line:
                raise VMTestError("QMP connection closed")
            msg: dict[str, Any] = json.loads(line)
            if "event" not in msg:
                return msg

    def execute(self, command: str, timeout: float | None = None, **arguments: Any) -> Any:
        """Run a command and return its result; raise VMTestError on a QMP error."""
        req: dict[str, Any] = {"execute": command}
        if arguments:
            req["arguments"] = arguments
        old = self.sock.gettimeout()
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            self.sock.sendall(json.dumps(req).encode() + b"\n")
            reply = self._read()
        finally:
            self.sock.settimeout(old)
        if "error" in reply:
            raise VMTestError(f"QMP {command} failed: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def close(self) -> None:
        self.file.close()
        self.sock.close()
