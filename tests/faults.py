"""Faults on the wire between two hosts: loss, duplication, reordering and delay.

This kernel has no netem, and kernel-bypass transports (AF_XDP, DPDK) skip the sender's qdisc
and netfilter anyway, so faults are put *in the middle*: host ``a`` and host ``b`` are joined
through a third namespace where a relay (tests/fault_relay.py) copies every Ethernet frame
from one side to the other, dropping, duplicating, holding back or delaying some of them.
Whatever a transport puts on its veth meets the same faults.

Quick tour::

    from faults import faulty_link

    def test_something() -> None:
        with faulty_link(loss=0.1, seed=1) as link:      # skips (or fails in CI) if not root
            a, b = link                                  # netns.Host, as from netns.Lan
            ...                                          # traffic between a.ip and b.ip
            link.injector.set(loss=0.0)                  # heal the network
            st = link.injector.stats()
            assert st["ab"]["dropped"] > 0

or, in a test, the ``faulty_pair`` fixture of conftest.py::

    def test_x(faulty_pair) -> None:
        a, b, inj = faulty_pair(loss=0.1, dup=0.05, reorder=0.25, delay_ms=1.0, seed=7)

Topology
    ``a (veth0) ==== (port0) middle (port1) ==== (veth1) b``.  A :class:`FaultyLink` is a
    :class:`netns.Lan` of two hosts built with its switch namespace (``link.switch``, the
    middle) and without the bridge: the relay is the only path between the ports.  Hosts are
    ``10.77.<s>.1`` and ``10.77.<s>.2`` on one /24, with names, cleanup and leak checking
    exactly as for every :class:`netns.Lan`.  The hosts see one L2 segment: ARP resolves,
    multicast floods, nothing is routed.

Parameters (see tests/fault_relay.py for the exact semantics)
    ``loss``, ``dup``, ``reorder`` (probabilities), ``delay_ms`` and ``jitter_ms`` (one way:
    a round trip gets twice), ``reorder_ms`` (the longest a reordered frame is held back
    waiting for a frame to overtake it; default 10), ``filter`` (``"udp"`` by default: only
    UDP frames, over IPv4 or IPv6, get faults; ARP and ICMP pass clean so neighbours resolve
    reliably; ``"ip"``; ``"all"``) and ``seed`` (0 by default; each direction draws from its own
    generator, so a run is reproducible frame for frame given the same frames).  Keywords
    apply to both directions; ``ab={...}`` / ``ba={...}`` override one direction (``ab`` is
    frames from a to b).

Counters
    :meth:`Injector.stats` returns ``{"ab": {...}, "ba": {...}, "total": {...}}`` with the
    counters ``rx``, ``tx``, ``clean``, ``dropped``, ``duplicated``, ``reordered``,
    ``delayed``, ``send_errors``, ``kernel_drops`` and ``pending`` (the per-direction entries
    also carry the ``params`` in force).  A test asserting on them should first let the wire
    go quiet: :meth:`Injector.wait_idle`.  ``send_errors`` and ``kernel_drops`` are losses the
    test did not ask for (the relay fell behind); :meth:`Injector.assert_healthy` checks them.

Checksums
    The relay reads and writes frames with their ``virtio_net_hdr`` (``PACKET_VNET_HDR``) and
    turns tx checksumming off on its own interfaces, so a UDP packet that leaves ``a`` with a
    partial checksum (veth's default tx offload) reaches ``b`` with a final, valid one.  Hosts'
    own offloads are left as on ``netns_pair``; ``tx_offload=False`` turns them off too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fault_relay import DEFAULTS, DIRS, check_params
from netns import Lan, Namespace, WaitError, _ip, output_of, require_privileges, wait_for_line

__all__ = ["DEFAULTS", "FaultyLink", "Injector", "RelayError", "faulty_link"]

#: The relay script, run with this interpreter inside the middle namespace.
RELAY = Path(__file__).resolve().with_name("fault_relay.py")


class RelayError(AssertionError):
    """The relay refused a command, or is not running any more."""


def _split_params(
    params: Mapping[str, Any], ab: Mapping[str, Any] | None, ba: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    both = check_params(dict(params))
    return {
        "ab": {**both, **check_params(dict(ab or {}))},
        "ba": {**both, **check_params(dict(ba or {}))},
    }


class Injector:
    """A running relay between two interfaces of one namespace, and the way to steer it.

    Normally made by :class:`FaultyLink`; usable on its own for any namespace that holds two
    interfaces to relay between (``Injector(ns, "port0", "port1").start()``).
    """

    def __init__(
        self,
        ns: Namespace,
        if_a: str,
        if_b: str,
        params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.ns = ns
        self.if_a = if_a
        self.if_b = if_b
        self.initial = {d: dict((params or {}).get(d, {})) for d in DIRS}
        self.proc: subprocess.Popen[str] | None = None
        self._dir: str | None = None
        #: The counters the relay printed when it stopped (None until :meth:`stop`).
        self.final_stats: dict[str, Any] | None = None
        #: Which offloads the relay turned off on its interfaces (from its "ready" line).
        self.offloads_off: dict[str, dict[str, bool]] = {}

    def __repr__(self) -> str:
        return f"Injector({self.ns.name}: {self.if_a} <-> {self.if_b})"

    @property
    def control_path(self) -> str:
        assert self._dir is not None, "relay not started"
        return os.path.join(self._dir, "ctl.sock")

    def start(self, timeout: float = 10.0) -> Injector:
        self._dir = tempfile.mkdtemp(prefix="insfault-")
        self.proc = self.ns.popen(
            [
                sys.executable,
                str(RELAY),
                "--a",
                self.if_a,
                "--b",
                self.if_b,
                "--control",
                self.control_path,
                "--params",
                json.dumps(self.initial),
            ]
        )
        line = wait_for_line(self.proc, lambda s: s.startswith("ready"), timeout)
        self.offloads_off = json.loads(line.split(" ", 1)[1])["offloads_off"]
        return self

    # -- steering --
    def _call(self, msg: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            what = output_of(self.proc).describe() if self.proc else "never started"
            raise RelayError(f"the fault relay is not running\n{what}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.control_path)
            s.sendall(json.dumps(msg).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        if not data:
            raise RelayError(f"no reply from the fault relay to {msg}")
        reply: dict[str, Any] = json.loads(data)
        if not reply.get("ok"):
            raise RelayError(f"the fault relay refused {msg}: {reply.get('error')}")
        return reply

    def set(
        self,
        direction: str = "both",
        *,
        reset: bool = False,
        **params: Any,
    ) -> dict[str, dict[str, Any]]:
        """Change fault parameters from now on, e.g. ``set(loss=0)`` to heal the network.

        ``direction`` is ``"both"``, ``"ab"`` (frames from a to b) or ``"ba"``; parameters not
        named keep their value unless ``reset`` (then they return to :data:`DEFAULTS`).
        Returns the parameters now in force, per direction.  Frames already delayed or held
        keep the fate they were given.
        """
        if direction not in ("both", *DIRS):
            raise ValueError(f"direction must be 'both', 'ab' or 'ba', not {direction!r}")
        reply = self._call(
            {"op": "set", "dir": direction, "reset": reset, "params": check_params(params)}
        )
        out: dict[str, dict[str, Any]] = reply["params"]
        return out

    def heal(self) -> None:
        """Every parameter back to its default (no faults) in both directions."""
        self.set(reset=True)

    def stats(self) -> dict[str, Any]:
        """The counters now (see the module docstring); after :meth:`stop`, the final ones."""
        if self.final_stats is not None and (self.proc is None or self.proc.poll() is not None):
            return self.final_stats
        out: dict[str, Any] = self._call({"op": "stats"})["stats"]
        return out

    def zero(self) -> None:
        """Reset every counter to 0 (e.g. after the warm-up of a test)."""
        self._call({"op": "zero"})

    def wait_idle(self, quiet: float = 0.05, timeout: float = 5.0) -> dict[str, Any]:
        """Wait until no frame is delayed or held back and none arrived for ``quiet``
        seconds; return the counters then.  With periodic traffic on the wire (an agent's
        heartbeats), pick ``quiet`` shorter than its period."""
        deadline = time.monotonic() + timeout
        last = self.stats()
        while True:
            time.sleep(quiet)
            now = self.stats()
            if now["total"]["pending"] == 0 and now["total"]["rx"] == last["total"]["rx"]:
                return now
            if time.monotonic() > deadline:
                raise WaitError(f"the wire did not go quiet within {timeout:g} s: {now}")
            last = now

    def assert_healthy(self, stats: Mapping[str, Any] | None = None) -> None:
        """Fail if the relay lost frames it was not asked to (socket overflow, send error)."""
        st = stats if stats is not None else self.stats()
        bad = {k: st["total"][k] for k in ("send_errors", "kernel_drops") if st["total"][k]}
        if bad:
            raise AssertionError(f"the fault relay lost frames on its own: {bad}; {st}")

    def stop(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """Stop the relay (SIGTERM); keep and return its final counters.  Idempotent."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
            reader = output_of(proc)
            reader.join(1.0)
            for line in reversed(reader.lines):
                if line.startswith("stats "):
                    self.final_stats = json.loads(line[len("stats ") :])
                    break
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        return self.final_stats


class FaultyLink(Lan):
    """Two hosts joined through a middle namespace running a fault-injecting relay.

    A :class:`netns.Lan` (``a, b = link``; ``link.switch`` is the middle namespace) whose
    :attr:`injector` steers the faults.  Keyword parameters are those of the relay (see the
    module docstring) for both directions; ``ab`` / ``ba`` override per direction.
    ``tx_offload=False`` also turns off tx checksum offload on the hosts' interfaces.
    """

    def __init__(
        self,
        *,
        subnet: int | None = None,
        ipv6: bool = False,
        tx_offload: bool = True,
        ab: Mapping[str, Any] | None = None,
        ba: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(2, bridge=True, subnet=subnet, ipv6=ipv6)
        self.tx_offload = tx_offload
        params_by_dir = _split_params(params, ab, ba)
        assert self.switch is not None
        self.middle: Namespace = self.switch
        self.injector = Injector(self.middle, "port0", "port1", params_by_dir)

    def __enter__(self) -> FaultyLink:
        self.start()
        return self

    def __repr__(self) -> str:
        return f"FaultyLink({self.hosts!r}, middle={self.middle!r})"

    def _build(self) -> None:
        super()._build()
        # The relay, not a bridge, joins the two ports.
        _ip("-n", self.middle.name, "link", "del", self.bridge_name)
        if not self.tx_offload:
            for h in self.hosts:
                h.disable_tx_offload()
        self.injector.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.injector.stop()
        super().close()


@contextlib.contextmanager
def faulty_link(**kw: Any) -> Iterator[FaultyLink]:
    """``with faulty_link(loss=0.1) as link:``: a :class:`FaultyLink` after
    :func:`netns.require_privileges`."""
    require_privileges("two hosts with faults on the wire")
    with FaultyLink(**kw) as built:
        yield built
