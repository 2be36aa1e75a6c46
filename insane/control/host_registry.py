"""Same-host discovery: a directory where each session on this host leaves its address.

One directory per (user, network namespace, domain), so sessions in different network
namespaces of one machine never mistake each other's loopback addresses. Entries of dead
processes are removed by whoever finds them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from insane.ops.process import process_alive
from insane.transports.base import Address


def _netns_id() -> str:
    try:
        return str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        return "host"


def registry_dir(domain: int) -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"insane-{os.getuid()}" / f"net{_netns_id()}-d{domain}"


class HostRegistry:
    def __init__(self, domain: int, peer_id: int) -> None:
        self.dir = registry_dir(domain)
        self.peer_id = peer_id
        self._entry = self.dir / f"{peer_id:016x}.json"

    def register(self, addr: Address) -> None:
        entry = json.dumps({"host": addr[0], "port": addr[1], "pid": os.getpid()})
        tmp = self._entry.with_suffix(".tmp")
        for attempt in range(3):
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                tmp.write_text(entry)
                tmp.replace(self._entry)
                return
            except FileNotFoundError:  # the last other session removed the directory just now
                if attempt == 2:
                    raise

    def unregister(self) -> None:
        self._entry.unlink(missing_ok=True)
        try:
            self.dir.rmdir()  # the last session of this domain leaves no directory behind
        except OSError:
            pass

    def peers(self) -> dict[int, Address]:
        """Live sessions on this host (other than ours), by peer id."""
        return {peer_id: addr for peer_id, (addr, _pid) in self.entries().items()}

    def entries(self) -> dict[int, tuple[Address, int]]:
        """Live sessions on this host (other than ours): peer id -> (address, process id)."""
        out: dict[int, tuple[Address, int]] = {}
        try:
            entries = list(self.dir.glob("*.json"))
        except OSError:
            return out
        for path in entries:
            if path == self._entry:
                continue
            try:
                peer_id = int(path.stem, 16)
                info = json.loads(path.read_text())
                host, port, pid = str(info["host"]), int(info["port"]), int(info["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not process_alive(pid):
                path.unlink(missing_ok=True)
                continue
            if host == "0.0.0.0":
                host = "127.0.0.1"
            out[peer_id] = ((host, port), pid)
        return out
