"""A faulty wire: relays Ethernet frames between two interfaces, with loss, duplication,
reordering and delay.  Standard library only; run it as root inside the namespace that owns
both interfaces (tests/faults.py starts it in the middle namespace of a :class:`FaultyLink`)::

    python fault_relay.py --a port0 --b port1 --control /tmp/x/ctl.sock [--params JSON]

Frames
    Two ``AF_PACKET``/``SOCK_RAW``/``ETH_P_ALL`` sockets, one bound to each interface.  Every
    frame received on one is sent, unchanged, on the other (ARP, IPv4, multicast, anything),
    so the two hosts share one L2 segment.  Frames the relay itself sends are not read back
    (``PACKET_IGNORE_OUTGOING``, or ``sll_pkttype == PACKET_OUTGOING`` on old kernels).

Checksums and offloads
    Both sockets use ``PACKET_VNET_HDR``: each frame comes with a ``virtio_net_hdr`` saying
    whether its L4 checksum is still partial (a veth sender with tx checksum offload leaves it
    so) and whether it is a GSO super-frame, and the relay hands that header back when it
    sends, so the kernel keeps the skb's checksum/GSO state.  On start the relay turns off tx
    checksumming (and with it TSO), GSO and GRO on its own two interfaces, so the kernel
    finishes any partial checksum and segments any super-frame *before* the frame leaves the
    middle: what a host receives from the relay is ordinary frames with final checksums, as
    from a real wire, whatever the sender's offloads.

Faults (per direction: ``ab`` is frames from interface a to interface b, ``ba`` the reverse)
    ``loss``, ``dup``, ``reorder``   probabilities 0..1, drawn independently per frame from a
                                     ``random.Random`` per direction seeded by ``seed``
    ``delay_ms``, ``jitter_ms``      each frame leaves ``delay_ms`` plus a uniform draw in
                                     ``[-jitter_ms, +jitter_ms]`` (never below 0) after it
                                     arrived; jitter alone can reorder frames, as in netem
    ``reorder_ms``                   a reordered frame is held back until the next frame of
                                     its direction has left, then sent; or after
                                     ``reorder_ms`` more if no frame comes
    ``filter``                       which frames get faults: ``"udp"`` (UDP over IPv4 or
                                     IPv6, the default; an IPv6 UDP header behind extension
                                     headers is not recognised), ``"ip"`` (all IPv4 and IPv6,
                                     so IPv6 neighbour discovery too) or ``"all"``; the rest
                                     pass at once and untouched (ARP, ICMP... by default)
    ``seed``                         seeds the direction's generator (0 by default); a
                                     ``set`` that names it reseeds
    A frame is first dropped (``loss``), else duplicated (``dup``: the copy follows the
    original at once), else-and-also held back (``reorder``), and delayed when ``delay_ms``
    or ``jitter_ms`` is set.

Control
    ``--control PATH`` is a UNIX stream socket (a path, since abstract sockets are private to a
    network namespace).  One JSON object per connection, one JSON reply:
    ``{"op": "set", "dir": "both"|"ab"|"ba", "params": {...}}`` changes parameters (fields
    left out keep their value; ``"reset": true`` starts from the defaults) and replies with
    the parameters now in force; ``{"op": "stats"}`` replies with the counters;
    ``{"op": "zero"}`` zeroes the counters.

Counters
    Per direction: ``rx`` frames received, ``tx`` frames sent (copies included), ``clean``
    frames the filter exempted, ``dropped``, ``duplicated``, ``reordered``, ``delayed``,
    ``send_errors`` (the kernel refused a send), ``kernel_drops`` (frames the kernel dropped
    before the relay read them: its socket buffer overflowed), and ``pending`` (frames
    delayed or held right now).  On SIGTERM or SIGINT the relay prints one line
    ``stats {json}`` on stdout, writes the same JSON to ``--stats-file`` if given, and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_VNET_HDR = 15
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
VNET = 10  # sizeof(struct virtio_net_hdr)

SIOCETHTOOL = 0x8946
ETHTOOL_SRXCSUM = 0x15
ETHTOOL_STXCSUM = 0x17
ETHTOOL_SSG = 0x19
ETHTOOL_STSO = 0x1F
ETHTOOL_SGSO = 0x24
ETHTOOL_SGRO = 0x2C

DIRS = ("ab", "ba")
FILTERS = ("udp", "ip", "all")
DEFAULTS: dict[str, Any] = {
    "loss": 0.0,
    "dup": 0.0,
    "reorder": 0.0,
    "delay_ms": 0.0,
    "jitter_ms": 0.0,
    "reorder_ms": 10.0,
    "filter": "udp",
    "seed": 0,
}
COUNTERS = (
    "rx",
    "tx",
    "clean",
    "dropped",
    "duplicated",
    "reordered",
    "delayed",
    "send_errors",
    "kernel_drops",
)


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validate a (partial) parameter dict; return it with numbers as floats."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in DEFAULTS:
            raise ValueError(f"unknown fault parameter {key!r}")
        if key == "filter":
            if value not in FILTERS:
                raise ValueError(f"filter must be one of {FILTERS}, not {value!r}")
            out[key] = value
        elif key == "seed":
            out[key] = None if value is None else int(value)
        else:
            v = float(value)
            if key in ("loss", "dup", "reorder") and not 0.0 <= v <= 1.0:
                raise ValueError(f"{key} is a probability in 0..1, not {value!r}")
            if v < 0.0:
                raise ValueError(f"{key} must not be negative, not {value!r}")
            out[key] = v
    return out


def ethtool_off(sock: socket.socket, ifname: str, cmd: int) -> bool:
    """``ethtool -K IFNAME <feature> off`` through the ioctl; False if the kernel refused."""
    buf = ctypes.create_string_buffer(struct.pack("II", cmd, 0))  # struct ethtool_value
    ifreq = struct.pack("16sP16x", ifname.encode(), ctypes.addressof(buf))
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    except OSError:
        return False
    return True


def quiet_offloads(ifname: str) -> dict[str, bool]:
    """Turn off tx checksumming (TSO follows), scatter-gather, GSO and GRO on ``ifname``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return {
            name: ethtool_off(s, ifname, cmd)
            for name, cmd in (
                ("tx", ETHTOOL_STXCSUM),
                ("tso", ETHTOOL_STSO),
                ("gso", ETHTOOL_SGSO),
                ("gro", ETHTOOL_SGRO),
            )
        }


class Held:
    """A frame held back (reordered): sent after the next frame of its direction, or when its
    wait runs out; ``copies`` drops to 0 once sent."""

    __slots__ = ("copies", "frame")

    def __init__(self, frame: bytes, copies: int) -> None:
        self.frame = frame
        self.copies = copies


class Direction:
    """Frames from ``rx`` to ``tx``: parameters, random generator, counters, held frames."""

    def __init__(self, name: str, rx: socket.socket, tx: socket.socket) -> None:
        self.name = name
        self.rx = rx
        self.tx = tx
        self.params: dict[str, Any] = dict(DEFAULTS)
        self.rng = random.Random(f"0:{name}")
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.held: list[Held] = []
        self.pending = 0
        self.faulty = False
        self.match = 0
        self.delayed = False

    def update(self, params: dict[str, Any], *, reset: bool = False) -> None:
        if reset:
            self.params = dict(DEFAULTS)
        self.params.update(params)
        if "seed" in params or reset:
            self.rng = random.Random(f"{self.params['seed']}:{self.name}")
        p = self.params
        self.delayed = p["delay_ms"] > 0 or p["jitter_ms"] > 0
        self.faulty = p["loss"] > 0 or p["dup"] > 0 or p["reorder"] > 0 or self.delayed
        self.match = FILTERS.index(p["filter"])


class Relay:
    def __init__(self, a: str, b: str, control: str | None, rcvbuf: int) -> None:
        self.ifnames = (a, b)
        self.offloads = {name: quiet_offloads(name) for name in (a, b)}
        self.socks = [self._open(a, rcvbuf), self._open(b, rcvbuf)]
        sa, sb = self.socks
        self.dirs = {"ab": Direction("ab", sa, sb), "ba": Direction("ba", sb, sa)}
        self.by_fd = {sa.fileno(): self.dirs["ab"], sb.fileno(): self.dirs["ba"]}
        self.heap: list[tuple[float, int, int, Direction, Any]] = []
        self.seq = 0
        self.buf = bytearray(VNET + 65536 + 256)
        self.view = memoryview(self.buf)
        self.control: socket.socket | None = None
        if control:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control)
            self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.control.bind(control)
            self.control.listen(8)
            self.control.setblocking(False)

    def _open(self, ifname: str, rcvbuf: int) -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        self.ignore_outgoing = True
        try:
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            self.ignore_outgoing = False
        with contextlib.suppress(OSError):
            s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE (root)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.bind((ifname, ETH_P_ALL))
        ifindex = socket.if_nametoindex(ifname)
        mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
        with contextlib.suppress(OSError):
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        s.setblocking(False)
        return s

    # -- counters and control --
    def kernel_drops(self) -> None:
        for d in self.dirs.values():
            raw = d.rx.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)  # read and reset
            d.counts["kernel_drops"] += struct.unpack("II", raw)[1]

    def stats(self) -> dict[str, Any]:
        self.kernel_drops()
        out: dict[str, Any] = {}
        total = dict.fromkeys((*COUNTERS, "pending"), 0)
        for name, d in self.dirs.items():
            entry: dict[str, Any] = {**d.counts, "pending": d.pending}
            for k in total:
                total[k] += entry[k]
            entry["params"] = dict(d.params)
            out[name] = entry
        out["total"] = total
        out["offloads_off"] = self.offloads
        return out

    def command(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        if op == "stats":
            return {"ok": True, "stats": self.stats()}
        if op == "zero":
            self.kernel_drops()
            for d in self.dirs.values():
                d.counts = dict.fromkeys(COUNTERS, 0)
            return {"ok": True}
        if op == "set":
            which = msg.get("dir", "both")
            names = DIRS if which == "both" else (which,)
            if any(n not in DIRS for n in names):
                raise ValueError(f"dir must be 'both', 'ab' or 'ba', not {which!r}")
            params = check_params(dict(msg.get("params", {})))
            for n in names:
                self.dirs[n].update(params, reset=bool(msg.get("reset")))
            return {"ok": True, "params": {n: self.dirs[n].params for n in DIRS}}
        raise ValueError(f"unknown op {op!r}")

    def serve_control(self) -> None:
        assert self.control is not None
        try:
            conn, _ = self.control.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(2.0)
            data = b""
            try:
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                try:
                    reply = self.command(json.loads(data))
                except (ValueError, TypeError, KeyError) as exc:
                    reply = {"ok": False, "error": str(exc)}
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass

    # -- frames --
    def send(self, d: Direction, frame: Any) -> None:
        try:
            d.tx.send(frame)
            d.counts["tx"] += 1
        except OSError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EAGAIN, errno.EMSGSIZE, errno.ENETDOWN):
                raise
            d.counts["send_errors"] += 1

    def release(self, d: Direction, frame: bytes, copies: int, hold: bool, now: float) -> None:
        """A frame's time has come: send it (then any frames held back behind it), or hold
        it back until the next one."""
        if hold:
            entry = Held(frame, copies)
            d.held.append(entry)
            d.pending += copies
            self.push(now + d.params["reorder_ms"] / 1000.0, 1, d, entry)
            return
        for _ in range(copies):
            self.send(d, frame)
        if d.held:
            for entry in d.held:
                self.send_held(d, entry)
            d.held.clear()

    def send_held(self, d: Direction, entry: Held) -> None:
        for _ in range(entry.copies):
            self.send(d, entry.frame)
        d.pending -= entry.copies
        entry.copies = 0

    def push(self, due: float, kind: int, d: Direction, item: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (due, self.seq, kind, d, item))

    def on_frame(self, d: Direction, n: int) -> None:
        buf = self.buf
        c = d.counts
        c["rx"] += 1
        # Filter: 0 = UDP over IPv4 (ethertype 0x0800, protocol 17) or IPv6 (0x86DD, next
        # header 17), 1 = IPv4 or IPv6, 2 = everything.
        hit = d.faulty
        if hit and d.match < 2:
            if buf[VNET + 12] == 0x08 and buf[VNET + 13] == 0x00:
                hit = d.match == 1 or buf[VNET + 23] == 17
            elif buf[VNET + 12] == 0x86 and buf[VNET + 13] == 0xDD:
                hit = d.match == 1 or buf[VNET + 20] == 17
            else:
                hit = False
        if not hit:
            c["clean"] += 1
            if d.held:
                self.release(d, bytes(self.view[:n]), 1, False, 0.0)
            else:
                self.send(d, self.view[:n])
            return
        p = d.params
        rnd = d.rng.random
        if p["loss"] > 0 and rnd() < p["loss"]:
            c["dropped"] += 1
            return
        copies = 1
        if p["dup"] > 0 and rnd() < p["dup"]:
            copies = 2
            c["duplicated"] += 1
        hold = p["reorder"] > 0 and rnd() < p["reorder"]
        if hold:
            c["reordered"] += 1
        if d.delayed:
            delay = p["delay_ms"]
            if p["jitter_ms"] > 0:
                delay = max(0.0, delay + d.rng.uniform(-p["jitter_ms"], p["jitter_ms"]))
            c["delayed"] += 1
            d.pending += copies
            self.push(time.monotonic() + delay / 1000.0, 0, d, (bytes(self.view[:n]), copies, hold))
            return
        if not hold and not d.held:
            for _ in range(copies):
                self.send(d, self.view[:n])
            return
        self.release(d, bytes(self.view[:n]), copies, hold, time.monotonic())

    def run_due(self) -> None:
        heap = self.heap
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, _, kind, d, item = heapq.heappop(heap)
            if kind == 0:
                frame, copies, hold = item
                d.pending -= copies
                self.release(d, frame, copies, hold, now)
            elif item.copies:  # a held frame whose wait ran out: nothing came after it
                self.send_held(d, item)
                d.held = [e for e in d.held if e.copies]

    def drain(self, d: Direction, budget: int = 512) -> None:
        rx = d.rx
        if self.ignore_outgoing:
            recv_into = rx.recv_into
            buf = self.buf
            for _ in range(budget):
                try:
                    n = recv_into(buf)
                except BlockingIOError:
                    return
                self.on_frame(d, n)
        else:
            for _ in range(budget):
                try:
                    n, addr = rx.recvfrom_into(self.buf)
                except BlockingIOError:
                    return
                if addr[2] != PACKET_OUTGOING:
                    self.on_frame(d, n)

    def loop(self) -> None:
        rlist: list[Any] = [*self.socks]
        if self.control is not None:
            rlist.append(self.control)
        ctl = self.control
        by_fd = self.by_fd
        while True:
            timeout = None
            if self.heap:
                timeout = max(0.0, self.heap[0][0] - time.monotonic())
            ready, _, _ = select.select(rlist, [], [], timeout)
            for s in ready:
                if s is ctl:
                    self.serve_control()
                else:
                    self.drain(by_fd[s.fileno()])
            if self.heap:
                self.run_due()


class Stop(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="interface towards host a")
    ap.add_argument("--b", required=True, help="interface towards host b")
    ap.add_argument("--control", help="path of the UNIX control socket")
    ap.add_argument("--stats-file", help="write the final counters here (JSON) on exit")
    ap.add_argument("--params", default="{}", help='JSON: {"ab": {...}, "ba": {...}} or {...}')
    ap.add_argument("--rcvbuf", type=int, default=8 << 20, help="socket receive buffer, bytes")
    args = ap.parse_args(argv)

    relay = Relay(args.a, args.b, args.control, args.rcvbuf)
    params = json.loads(args.params)
    if set(params) <= set(DIRS) and params:
        for name, p in params.items():
            relay.dirs[name].update(check_params(p), reset=True)
    else:
        both = check_params(params)
        for d in relay.dirs.values():
            d.update(both, reset=True)

    def stop(signum: int, frame: Any) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", json.dumps({"offloads_off": relay.offloads}), flush=True)
    try:
        relay.loop()
    except Stop:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stats = relay.stats()
    line = json.dumps(stats)
    if args.stats_file:
        with open(args.stats_file, "w") as f:
            f.write(line + "\n")
    print("stats", line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
