"""Several hosts on one machine, for tests: Linux network namespaces joined by veth.

Everything here stays inside namespaces the test itself creates: no interface, address or
route is ever added to the root namespace, and no namespace gets a route out of its own LAN,
so tests built on this module can only reach loopback and each other.

Quick tour::

    from netns import Lan, require_privileges, wait_for_line

    def test_something() -> None:
        require_privileges("test_something")          # skip (or fail under CI) if not root
        with Lan(2) as (a, b):                           # two namespaces joined by a veth pair
            rx = b.python(RECEIVER_CODE, b.ip)           # sys.executable inside b
            wait_for_line(rx, "ready")
            a.run_python(SENDER_CODE, b.ip, check=True)
            assert wait_for_line(rx, re.compile(r"^got ")) == "got hello"

Topology
    ``Lan(n)`` creates ``n`` host namespaces on one subnet ``10.77.<s>.0/24``; host ``i`` has
    address ``10.77.<s>.<i+1>`` on interface ``veth<i>``.  Two hosts are joined directly by
    a veth pair; three or more (or ``bridge=True``) hang off a Linux bridge ``br0`` in an extra
    "switch" namespace (``lan.switch``), each host's veth peer ``port<i>`` enslaved to it.  The
    switch namespace is the place for faults on the wire (nftables on the bridge, a relay).

    In every host: ``lo`` is up; the LAN interface is up with the MULTICAST flag; there is a
    route ``224.0.0.0/4 dev veth<i>`` so multicast sends pick the LAN interface even without
    ``IP_MULTICAST_IF``; there is no default route.  IPv6 is disabled by default (``ipv6=True``
    keeps it) so that the wire carries only what the test sends: no router/neighbour
    solicitations or MLD reports to confuse packet counters or a fault-injecting relay.  The
    bridge has multicast snooping off (multicast is flooded to every port, no querier needed)
    and forward delay 0 (ports forward at once).

Names
    Namespaces are named ``ins<pid>-<k>h<i>`` (hosts) and ``ins<pid>-<k>sw`` (switch), where
    ``<pid>`` is this process's pid and ``<k>`` a per-process counter, so concurrent test runs
    never collide and :data:`PREFIX` identifies everything this process created.  Names are
    at most 15 characters, so they are valid interface names too.

Cleanup
    Leaving the ``with`` block (normally or by an exception) kills every process started with
    :meth:`Namespace.popen` / :meth:`Namespace.python` (their whole process group) and any
    other process still inside the namespaces, then deletes the namespaces, which deletes
    their interfaces.  :func:`leftover_namespaces` lists what a crashed run left behind.

Privileges
    :func:`require_privileges` skips a test that cannot create namespaces, except when the
    environment sets ``INSANE_CI_STRICT=1`` (CI does): then it fails, so a green CI never
    hides a skipped test.  :func:`strict_skip` is the same policy for any other reason.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

__all__ = [
    "PREFIX",
    "REPO_ROOT",
    "STRICT_ENV",
    "Host",
    "Lan",
    "LineReader",
    "Namespace",
    "WaitError",
    "delete_namespaces",
    "is_strict",
    "lan",
    "leftover_namespaces",
    "missing_privileges",
    "output_of",
    "require_privileges",
    "strict_skip",
    "two_hosts",
    "wait_exit",
    "wait_for_line",
]

#: Repository root; put on ``PYTHONPATH`` of every Python started inside a namespace.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Environment variable that turns skips into failures (CI sets it to ``1``).
STRICT_ENV = "INSANE_CI_STRICT"

#: Prefix of every namespace this process creates.
PREFIX = f"ins{os.getpid()}-"

#: Seconds any single setup/teardown command may take.
_CMD_TIMEOUT = 10.0

_counter = itertools.count()
_counter_lock = threading.Lock()


# --------------------------------------------------------------------------------------------
# Skipping, strictly
# --------------------------------------------------------------------------------------------


def is_strict() -> bool:
    """True when ``INSANE_CI_STRICT=1``: a test that would skip must fail instead."""
    return os.environ.get(STRICT_ENV, "") == "1"


def strict_skip(reason: str) -> None:
    """``pytest.skip(reason)``, or ``pytest.fail(reason)`` under ``INSANE_CI_STRICT=1``.

    Use it for anything CI is expected to provide (root, namespaces, XDP, DPDK...).  For
    hardware CI machines never have (an RDMA device), call ``pytest.skip`` directly.
    """
    if is_strict():
        pytest.fail(f"{reason} [{STRICT_ENV}=1 turns this skip into a failure]", pytrace=False)
    pytest.skip(reason)


def engine_built() -> None:
    """Skip (fail under ``INSANE_CI_STRICT=1``) unless the native engine was built."""
    from insane.qos.engine import why_not_native

    why = why_not_native()
    if why:
        strict_skip(f"{why}: it needs a C compiler and libcrypto's headers (libssl-dev)")


@functools.cache
def _probe_netns() -> str | None:
    """Try once per process to build what :class:`Lan` builds; the error text, or None."""
    name = f"{PREFIX}probe"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "-n", name, "link", "add", "pa", "type", "veth", "peer", "name", "pb"],
        ["ip", "-n", name, "link", "add", "pbr", "type", "bridge"],
        ["ip", "-n", name, "link", "set", "pb", "master", "pbr"],
    ]
    try:
        for cmd in steps:
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=_CMD_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"`{' '.join(cmd)}` failed: {exc}"
            if res.returncode != 0:
                return f"`{' '.join(cmd)}` failed: {res.stderr.strip() or res.returncode}"
        return None
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=_CMD_TIMEOUT)


def missing_privileges() -> str | None:
    """Why this process cannot build a :class:`Lan`, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (run as root, or see README)"
    if shutil.which("ip") is None:
        return "needs the `ip` command to create network namespaces (Debian package iproute2)"
    err = _probe_netns()
    if err is not None:
        return f"cannot create network namespaces, veth pairs and bridges: {err}"
    return None


def require_privileges(what: str) -> None:
    """Skip the calling test (fail it under ``INSANE_CI_STRICT=1``) unless namespaces work.

    ``what`` names the test or feature, and starts the reason, e.g.
    ``"two-host UDP test: needs root to create network namespaces (...)"``.
    """
    reason = missing_privileges()
    if reason is not None:
        strict_skip(f"{what}: {reason}")


# --------------------------------------------------------------------------------------------
# Waiting on child processes
# --------------------------------------------------------------------------------------------


class WaitError(AssertionError):
    """A child process did not print what was awaited in time, or did not exit in time."""


Match = str | re.Pattern[str] | Callable[[str], bool]


def _matches(match: Match, line: str) -> bool:
    if isinstance(match, str):
        return line == match
    if isinstance(match, re.Pattern):
        return match.search(line) is not None
    return match(line)


class LineReader:
    """Reads a child's stdout (line by line) and stderr in background threads.

    Reading in threads means a test can wait with a timeout, a child never blocks on a full
    pipe, and error messages can show what the child said.  Get one with :func:`output_of`.
    """

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        #: Every stdout line so far, without the trailing newline.
        self.lines: list[str] = []
        self._stderr: list[str] = []
        self._next = 0  # index in self.lines of the next line wait_for() looks at
        self._eof = proc.stdout is None
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        if proc.stdout is not None:
            self._start(self._read_stdout, proc.stdout)
        if proc.stderr is not None:
            self._start(self._read_stderr, proc.stderr)

    def _start(self, target: Callable[[Any], None], stream: Any) -> None:
        t = threading.Thread(target=target, args=(stream,), daemon=True, name="netns-reader")
        t.start()
        self._threads.append(t)

    def _read_stdout(self, stream: Any) -> None:
        try:
            for line in stream:
                with self._cond:
                    self.lines.append(line.rstrip("\r\n"))
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass  # stream closed under us during cleanup
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _read_stderr(self, stream: Any) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in stream:
                with self._cond:
                    self._stderr.append(line)

    @property
    def stderr(self) -> str:
        """Everything the child wrote to stderr so far."""
        with self._cond:
            return "".join(self._stderr)

    def join(self, timeout: float = 2.0) -> None:
        """Wait for the reader threads to reach end of file (after the child exited)."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def describe(self) -> str:
        """A report for error messages: the command, its state, and its recent output."""
        rc = self.proc.poll()
        state = "still running" if rc is None else f"exited with status {rc}"
        args = self.proc.args
        cmd = " ".join(map(str, args)) if isinstance(args, list | tuple) else str(args)
        with self._cond:
            out = "\n".join(self.lines[-30:]) or "(none)"
            err = "".join(self._stderr)[-3000:].rstrip() or "(none)"
        return f"command: {cmd}\nstate: {state}\nstdout (last lines):\n{out}\nstderr:\n{err}"

    def wait_for(self, match: Match, timeout: float = 5.0) -> str:
        """Return the first stdout line not yet consumed that matches ``match``.

        ``match`` is a ``str`` (the whole line, newline stripped, must equal it), a compiled
        regular expression (``search``), or a predicate.  Lines examined are consumed, so
        successive calls walk forward through the output.  Raises :class:`WaitError` if the
        child closes its stdout (exits) first, or after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._next < len(self.lines):
                    line = self.lines[self._next]
                    self._next += 1
                    if _matches(match, line):
                        return line
                if self._eof:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            eof = self._eof
        if eof:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(1.0)
            self.join(1.0)
            why = "stdout closed before a line matched"
        else:
            why = f"no line matched within {timeout:g} s"
        raise WaitError(f"waiting for {match!r}: {why}\n{self.describe()}")


_readers: weakref.WeakKeyDictionary[subprocess.Popen[str], LineReader] = weakref.WeakKeyDictionary()
_readers_lock = threading.Lock()


def output_of(proc: subprocess.Popen[str]) -> LineReader:
    """The :class:`LineReader` of ``proc`` (created on first use; text-mode pipes only)."""
    with _readers_lock:
        reader = _readers.get(proc)
        if reader is None:
            reader = _readers[proc] = LineReader(proc)
        return reader


def wait_for_line(proc: subprocess.Popen[str], match: Match, timeout: float = 5.0) -> str:
    """Wait until ``proc`` prints a line matching ``match``; return it.  See
    :meth:`LineReader.wait_for`.  Typical use: ``wait_for_line(peer, "ready")``."""
    return output_of(proc).wait_for(match, timeout)


def wait_exit(proc: subprocess.Popen[str], timeout: float = 5.0, *, check: bool = True) -> int:
    """Wait for ``proc`` to exit and its output to be read; return its exit status.

    With ``check`` (the default) a non-zero status raises :class:`WaitError` showing the
    child's output; so does not exiting within ``timeout`` seconds (the child is left
    running; the namespace cleanup kills it).
    """
    reader = output_of(proc)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise WaitError(f"did not exit within {timeout:g} s\n{reader.describe()}") from None
    reader.join()
    if check and rc != 0:
        raise WaitError(f"exited with status {rc}\n{reader.describe()}")
    return rc


# --------------------------------------------------------------------------------------------
# Namespaces
# --------------------------------------------------------------------------------------------


def _ip(*args: str) -> None:
    """Run ``ip ARGS``; raise RuntimeError carrying its stderr if it fails."""
    cmd = ["ip", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=_CMD_TIMEOUT)
    if res.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({res.returncode}): {res.stderr.strip()}")


def _python_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


class Namespace:
    """One network namespace, and the processes a test started inside it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen[str]] = []
        self.created = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def create(self) -> None:
        _ip("netns", "add", self.name)
        self.created = True

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` prefixed so that it runs inside this namespace (``ip netns exec``)."""
        return ["ip", "netns", "exec", self.name, *map(str, cmd)]

    def run(self, cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the namespace to completion (``subprocess.run``).

        Defaults, each overridable through ``kw``: ``capture_output=True``, ``text=True``,
        ``timeout=10``, ``check=False``.
        """
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", _CMD_TIMEOUT)
        result: subprocess.CompletedProcess[str] = subprocess.run(self.wrap(cmd), **kw)
        return result

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[str]:
        """Start ``cmd`` inside the namespace, in its own process group, and return it.

        Text mode always; by default stdin is ``/dev/null`` and stdout/stderr are pipes read
        by a :class:`LineReader` (so use :func:`wait_for_line` / :func:`wait_exit` /
        :func:`output_of`, not ``communicate``).  The process group is killed when the
        namespace is cleaned up.
        """
        kw["text"] = True
        kw.pop("universal_newlines", None)
        kw["start_new_session"] = True
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        proc: subprocess.Popen[str] = subprocess.Popen(self.wrap(cmd), **kw)
        self.procs.append(proc)
        output_of(proc)  # start draining the pipes now
        return proc

    def python(
        self, code: str, *argv: str, env: Mapping[str, str] | None = None, **kw: Any
    ) -> subprocess.Popen[str]:
        """Start ``sys.executable -c CODE ARGV...`` inside the namespace (see :meth:`popen`).

        ``code`` is dedented; ``sys.argv[1:]`` is ``argv``.  The child has the repository on
        ``PYTHONPATH``, unbuffered output, and ``env`` merged into this process's environment.
        """
        return self.python_args("-c", textwrap.dedent(code), *argv, env=env, **kw)

    def python_args(
        self, *args: str, env: Mapping[str, str] | None = None, **kw: Any
    ) -> subprocess.Popen[str]:
        """Start ``sys.executable ARGS...`` inside the namespace, e.g.
        ``host.python_args("-m", "insane.cli", "sub", "x")``; environment as :meth:`python`."""
        return self.popen([sys.executable, *args], env=_python_env(env), **kw)

    def run_python(
        self, code: str, *argv: str, env: Mapping[str, str] | None = None, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``sys.executable -c CODE ARGV...`` inside the namespace to completion
        (see :meth:`run` for the defaults, :meth:`python` for the environment)."""
        cmd = [sys.executable, "-c", textwrap.dedent(code), *argv]
        return self.run(cmd, env=_python_env(env), **kw)

    def pids(self) -> list[int]:
        """Pids of every process inside the namespace."""
        res = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=5
        )
        return [int(p) for p in res.stdout.split() if p.isdigit()]

    def destroy(self) -> None:
        """Kill what runs inside, then delete the namespace.  Idempotent."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        if self.created:
            # Grandchildren that left the process group, or processes started by hand.
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            output_of(proc).join(1.0)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self.procs.clear()
        if self.created:
            _ip("netns", "del", self.name)
            self.created = False


_ETHTOOL_GTXCSUM = 0x16
_ETHTOOL_STXCSUM = 0x17

# Run inside the namespace when the ethtool program is missing: the same ioctl ethtool uses.
_TX_CSUM_CODE = """
import ctypes, fcntl, socket, struct, sys
SIOCETHTOOL = 0x8946
ifname, cmd, value = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = ctypes.create_string_buffer(struct.pack("II", cmd, value))  # struct ethtool_value
ifreq = struct.pack("16sP16x", ifname.encode(), ctypes.addressof(buf))  # struct ifreq
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
print(struct.unpack("II", buf.raw[:8])[1])
"""


class Host(Namespace):
    """A host on a :class:`Lan`: a namespace with one interface ``ifname`` holding ``ip``."""

    def __init__(self, name: str, index: int, ip: str, prefixlen: int, ifname: str) -> None:
        super().__init__(name)
        self.index = index
        self.ip = ip
        self.prefixlen = prefixlen
        self.ifname = ifname

    def __repr__(self) -> str:
        return f"Host({self.name!r}, ip={self.ip!r}, ifname={self.ifname!r})"

    def _tx_csum(self, cmd: int, value: int) -> int:
        res = self.run_python(_TX_CSUM_CODE, self.ifname, str(cmd), str(value))
        if res.returncode != 0:
            raise RuntimeError(f"ethtool ioctl on {self.ifname} in {self.name}: {res.stderr}")
        return int(res.stdout.strip())

    def tx_checksum_offload(self) -> bool:
        """Whether ``ifname`` currently offloads transmit checksums (ETHTOOL_GTXCSUM)."""
        return self._tx_csum(_ETHTOOL_GTXCSUM, 0) != 0

    def disable_tx_offload(self) -> None:
        """``ethtool -K IFNAME tx off``: make the kernel finish UDP/TCP checksums itself.

        veth offloads transmit checksums, so a packet sent by this host's kernel crosses the
        veth with a *partial* checksum (pseudo-header only).  The kernel receiver does not
        care, but a frame copied off the wire (AF_PACKET relay, AF_XDP, DPDK af_packet) then
        carries a checksum that does not verify (see DESIGN.md, "Testing that proves
        something").  Turning tx checksumming off on the *sender* makes checksums final.
        Uses the ethtool program when installed, otherwise the same ioctl from Python
        (ETHTOOL_STXCSUM; the kernel then drops TSO too, which needs checksum offload).
        """
        if shutil.which("ethtool") is not None:
            res = self.run(["ethtool", "-K", self.ifname, "tx", "off"])
            if res.returncode == 0:
                return
        self._tx_csum(_ETHTOOL_STXCSUM, 0)


class Lan:
    """``n`` hosts in their own namespaces on one IPv4 subnet; a context manager.

    ``with Lan(3) as lan:`` builds it and tears it down on exit (also on error).  ``lan`` is a
    sequence of :class:`Host` (``a, b = lan``; ``lan[0].ip``).  ``bridge`` picks the wiring:
    ``None`` means a direct veth pair for two hosts and a bridge in ``lan.switch`` otherwise;
    ``True`` forces the bridge (e.g. to put faults on it even with two hosts).  Host ``i`` is
    ``10.77.<subnet>.<i+1>/24`` on ``veth<i>``.  ``ipv6=False`` disables IPv6 on every
    interface to keep the wire quiet.
    """

    def __init__(
        self,
        n: int = 2,
        *,
        bridge: bool | None = None,
        subnet: int | None = None,
        ipv6: bool = False,
    ) -> None:
        if not 1 <= n <= 200:
            raise ValueError(f"a Lan has 1 to 200 hosts, not {n}")
        if bridge is False and n != 2:
            raise ValueError("without a bridge a Lan has exactly two hosts")
        with _counter_lock:
            k = next(_counter)
        self.id = f"{PREFIX}{k}"
        self.subnet = subnet if subnet is not None else k % 250 + 1
        self.bridged = bool(bridge) or n != 2
        self.ipv6 = ipv6
        self.hosts: list[Host] = [
            Host(f"{self.id}h{i}", i, f"10.77.{self.subnet}.{i + 1}", 24, f"veth{i}")
            for i in range(n)
        ]
        #: The switch namespace holding bridge ``br0`` (ports ``port<i>``), if bridged.
        self.switch: Namespace | None = Namespace(f"{self.id}sw") if self.bridged else None
        self.bridge_name = "br0"
        self._up = False

    # -- sequence of hosts --
    def __len__(self) -> int:
        return len(self.hosts)

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __getitem__(self, i: int) -> Host:
        return self.hosts[i]

    def __repr__(self) -> str:
        return f"Lan({self.hosts!r}, switch={self.switch!r})"

    @property
    def namespaces(self) -> list[Namespace]:
        """Every namespace of this LAN: the hosts, then the switch if any."""
        return [*self.hosts, *([self.switch] if self.switch else [])]

    # -- lifecycle --
    def __enter__(self) -> Lan:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Create and wire the namespaces.  On failure, tears down what it made and raises."""
        if self._up:
            return
        self._up = True
        _live.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _quiet_ipv6(self, ns: Namespace) -> None:
        if self.ipv6:
            return
        # Before any interface exists: new interfaces inherit "default".
        script = (
            "for k in all default; do f=/proc/sys/net/ipv6/conf/$k/disable_ipv6; "
            '[ -w "$f" ] && echo 1 > "$f"; done; true'
        )
        res = ns.run(["sh", "-c", script])
        if res.returncode != 0:
            raise RuntimeError(f"disabling IPv6 in {ns.name}: {res.stderr.strip()}")

    def _build(self) -> None:
        for ns in self.namespaces:
            ns.create()
            self._quiet_ipv6(ns)
            _ip("-n", ns.name, "link", "set", "lo", "up")
        sw = self.switch
        if sw is not None:
            br = self.bridge_name
            _ip(
                "-n",
                sw.name,
                "link",
                "add",
                br,
                "type",
                "bridge",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            )
            _ip("-n", sw.name, "link", "set", br, "up")
            for h in self.hosts:
                port = f"port{h.index}"
                _ip(
                    "-n",
                    h.name,
                    "link",
                    "add",
                    h.ifname,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    port,
                    "netns",
                    sw.name,
                )
                _ip("-n", sw.name, "link", "set", port, "master", br)
                _ip("-n", sw.name, "link", "set", port, "up")
        else:
            a, b = self.hosts
            _ip(
                "-n",
                a.name,
                "link",
                "add",
                a.ifname,
                "type",
                "veth",
                "peer",
                "name",
                b.ifname,
                "netns",
                b.name,
            )
        for h in self.hosts:
            _ip("-n", h.name, "link", "set", h.ifname, "multicast", "on", "up")
            _ip("-n", h.name, "addr", "add", f"{h.ip}/{h.prefixlen}", "dev", h.ifname)
            _ip("-n", h.name, "route", "add", "224.0.0.0/4", "dev", h.ifname)

    def close(self) -> None:
        """Kill every process inside, delete every namespace.  Idempotent; raises the first
        error only after trying everything."""
        errors: list[BaseException] = []
        for ns in self.namespaces:
            try:
                ns.destroy()
            except Exception as exc:
                errors.append(exc)
        self._up = False
        _live.discard(self)
        if errors:
            raise errors[0]


_live: set[Lan] = set()


@atexit.register
def _close_forgotten_lans() -> None:
    """Last resort for a Lan started and never closed (the conftest leak check reports it)."""
    for forgotten in list(_live):
        with contextlib.suppress(Exception):
            forgotten.close()


@contextlib.contextmanager
def lan(n: int = 2, **kw: Any) -> Iterator[Lan]:
    """``with lan(3) as l:``: a :class:`Lan` after :func:`require_privileges`."""
    require_privileges(f"a {n}-host LAN of network namespaces")
    with Lan(n, **kw) as built:
        yield built


@contextlib.contextmanager
def two_hosts(**kw: Any) -> Iterator[tuple[Host, Host]]:
    """``with two_hosts() as (a, b):``: two hosts joined by a veth pair (see :func:`lan`)."""
    with lan(2, **kw) as built:
        yield built[0], built[1]


def leftover_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of existing namespaces starting with ``prefix`` (by default: made by this
    process and not deleted)."""
    if shutil.which("ip") is None:
        return []
    res = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=_CMD_TIMEOUT
    )
    names = (line.split()[0] for line in res.stdout.splitlines() if line.strip())
    return sorted(n for n in names if n.startswith(prefix))


def delete_namespaces(names: Sequence[str]) -> None:
    """Best effort: kill the processes in, and delete, the namespaces ``names``."""
    for name in names:
        ns = Namespace(name)
        ns.created = True
        with contextlib.suppress(Exception):
            ns.destroy()
