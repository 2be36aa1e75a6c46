"""The configuration as pydantic models: per-channel QoS rules, transports, discovery, metrics.

Every leaf is checked by a small validator that raises one readable error ("expected an integer
0..65535, got 'abc'"); `insane.qos.config` turns those errors into `ConfigError` lines that name
the file and the key path. Unknown keys are errors in every section.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, NoReturn, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, PrivateAttr, model_validator
from pydantic_core import PydanticCustomError

from insane.subjects import SubjectError, matches, specificity, validate_pattern

Datapath = Literal["default", "fast"]
Reliability = Literal["best_effort", "reliable"]
Ordering = Literal["none", "ordered"]
Consumption = Literal["low", "poll"]
Overflow = Literal["block", "drop", "error"]
XdpMode = Literal["auto", "native", "generic"]
QoSWord = Literal[
    "fast", "default", "reliable", "best_effort", "ordered", "unordered", "poll", "low"
]

#: What each word in ``qos: [...]`` sets: word -> (field, value).
QOS_WORDS: dict[str, tuple[str, str]] = {
    "fast": ("datapath", "fast"),
    "default": ("datapath", "default"),
    "reliable": ("reliability", "reliable"),
    "best_effort": ("reliability", "best_effort"),
    "ordered": ("ordering", "ordered"),
    "unordered": ("ordering", "none"),
    "poll": ("consumption", "poll"),
    "low": ("consumption", "low"),
}

#: Where `Config.source` points when no file was read.
EMBEDDED_DEFAULT = "<embedded default>"

_QOS_CACHE_MAX = 16384


# ---------------------------------------------------------------------------------------------
# Leaf validators: each accepts exactly what the YAML contract allows, or says what it expected.


def yaml_repr(value: object) -> str:
    """How a parsed YAML value is shown in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, int | float):
        return str(value)
    return type(value).__name__


def _fail(expected: str, got: object) -> NoReturn:
    raise PydanticCustomError(
        "insane_expected",
        "expected {expected}, got {got}",
        {"expected": expected, "got": yaml_repr(got)},
    )


def _optional(check: Callable[[object], object]) -> Callable[[object], object]:
    return lambda v: None if v is None else check(v)


def _one_of(choices: Any) -> Callable[[object], object]:
    values: tuple[str, ...] = get_args(choices)
    expected = "one of " + ", ".join(repr(v) for v in values)

    def check(v: object) -> object:
        if not isinstance(v, str) or v not in values:
            _fail(expected, v)
        return v

    return check


def _int_in(lo: int, hi: int) -> Callable[[object], object]:
    def check(v: object) -> object:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            _fail(f"an integer {lo}..{hi}", v)
        return v

    return check


def _boolean(v: object) -> object:
    if not isinstance(v, bool):
        _fail("true or false", v)
    return v


def _seconds(v: object) -> object:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        _fail("a number of seconds > 0", v)
    return float(v)


def _seconds_or_zero(v: object) -> object:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        _fail("a number of seconds >= 0", v)
    return float(v)


def _name(v: object) -> object:
    if not isinstance(v, str) or not v.strip():
        _fail("a non-empty string", v)
    return v


def _list(v: object) -> object:
    if v is None:
        return ()
    if not isinstance(v, list | tuple):
        _fail("a list", v)
    return tuple(v)


def _ip(v: object) -> object:
    try:
        ipaddress.ip_address(v if isinstance(v, str) else "")
    except ValueError:
        _fail("an IP address", v)
    return v


def _multicast_group(v: object) -> object:
    try:
        ok = ipaddress.IPv4Address(v if isinstance(v, str) else "").is_multicast
    except ValueError:
        ok = False
    if not ok:
        _fail("an IPv4 multicast address (224.0.0.0/4)", v)
    return v


def _zero_copy(v: object) -> object:
    if v in ("true", "false"):
        return v == "true"
    if v != "auto" and not isinstance(v, bool):
        _fail("one of 'auto', true, false", v)
    return v


def parse_peer(entry: str) -> tuple[str, int]:
    """Split a static peer ``"host:port"`` (IPv6 as ``"[::1]:7447"``) into ``(host, port)``."""
    host, sep, port = entry.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected 'host:port' with port 1..65535, got {entry!r}")
    return host, int(port)


def _peer(v: object) -> object:
    if not isinstance(v, str):
        _fail("'host:port' with port 1..65535", v)
    try:
        parse_peer(v)
    except ValueError:
        _fail("'host:port' with port 1..65535", v)
    return v


def _pattern(v: object) -> object:
    if not isinstance(v, str):
        _fail("a subject pattern such as orders.* or orders.>", v)
    try:
        validate_pattern(v)
    except SubjectError as e:
        why = str(e).split(": ", 1)[-1]
        raise PydanticCustomError(
            "insane_expected",
            "expected a subject pattern such as orders.* or orders.>, got {got} ({why})",
            {"got": repr(v), "why": why},
        ) from None
    return v


def _words(v: object) -> object:
    if not isinstance(v, list | tuple):
        _fail("a list of words (" + ", ".join(QOS_WORDS) + ")", v)
    return tuple(v)


Port = Annotated[int, BeforeValidator(_int_in(0, 65535))]
Flag = Annotated[bool, BeforeValidator(_boolean)]
Seconds = Annotated[float, BeforeValidator(_seconds)]
Name = Annotated[str, BeforeValidator(_name)]
Names = Annotated[tuple[Name, ...], BeforeValidator(_list)]
IPAddress = Annotated[str, BeforeValidator(_ip)]
Word = Annotated[QoSWord, BeforeValidator(_one_of(QoSWord))]
Pattern = Annotated[str, BeforeValidator(_pattern)]
Peer = Annotated[str, BeforeValidator(_peer)]


def _opt(check: Callable[[object], object]) -> BeforeValidator:
    return BeforeValidator(_optional(check))


# ---------------------------------------------------------------------------------------------
# Sections


class Section(BaseModel):
    """Base of every YAML section: frozen, unknown keys rejected, ``null`` read as empty."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: Any) -> Any:
        return {} if data is None else data


class ChannelQoS(BaseModel):
    """The resolved QoS of one channel: every field set. Frozen and hashable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    datapath: Datapath = "default"
    reliability: Reliability = "reliable"
    ordering: Ordering = "ordered"
    consumption: Consumption = "low"
    overflow: Overflow = "block"

    @property
    def fast(self) -> bool:
        return self.datapath == "fast"

    @property
    def reliable(self) -> bool:
        return self.reliability == "reliable"

    @property
    def ordered(self) -> bool:
        return self.ordering == "ordered"

    @property
    def poll(self) -> bool:
        return self.consumption == "poll"

    @property
    def words(self) -> tuple[str, ...]:
        """The QoS as ``qos:`` words, e.g. ``('fast', 'reliable', 'ordered', 'low')``."""
        return (
            self.datapath,
            self.reliability,
            "ordered" if self.ordered else "unordered",
            self.consumption,
        )

    def describe(self) -> str:
        """The QoS as applied, on one line: ``datapath=fast reliability=reliable
        ordering=ordered ...``. A best-effort channel carries no sequence numbers, so it has
        no order to keep whatever ``ordering`` says: it shows ``ordering=none``."""
        fields = self.model_dump()
        if not self.reliable:
            fields["ordering"] = "none"
        return " ".join(f"{k}={v}" for k, v in fields.items())


class QoSRule(Section):
    """One rule as written in YAML: words in ``qos`` and/or explicit fields, unset ones None."""

    qos: Annotated[tuple[Word, ...], BeforeValidator(_words)] = ()
    datapath: Annotated[Datapath | None, _opt(_one_of(Datapath))] = None
    reliability: Annotated[Reliability | None, _opt(_one_of(Reliability))] = None
    ordering: Annotated[Ordering | None, _opt(_one_of(Ordering))] = None
    consumption: Annotated[Consumption | None, _opt(_one_of(Consumption))] = None
    overflow: Annotated[Overflow | None, _opt(_one_of(Overflow))] = None

    @model_validator(mode="after")
    def _consistent(self) -> QoSRule:
        self.explicit()
        return self

    def explicit(self) -> dict[str, str]:
        """The fields this rule sets, words expanded; contradictions raise."""
        from_words: dict[str, tuple[str, str]] = {}  # field -> (word, value)
        for word in self.qos:
            field, value = QOS_WORDS[word]
            seen = from_words.setdefault(field, (word, value))
            if seen[1] != value:
                raise PydanticCustomError(
                    "insane_contradiction",
                    "qos words {a} and {b} contradict each other (both set {field})",
                    {"a": repr(seen[0]), "b": repr(word), "field": field, "at": "qos"},
                )
        out = {field: value for field, (_, value) in from_words.items()}
        for field in ("datapath", "reliability", "ordering", "consumption", "overflow"):
            value = getattr(self, field)
            if value is None:
                continue
            if field in from_words and from_words[field][1] != value:
                raise PydanticCustomError(
                    "insane_contradiction",
                    "qos word {word} contradicts {field}: {value}",
                    {"word": repr(from_words[field][0]), "field": field, "value": value},
                )
            out[field] = value
        return out

    def resolve(self, base: ChannelQoS) -> ChannelQoS:
        """This rule's QoS, taking every field it does not set from ``base``."""
        return ChannelQoS.model_validate({**base.model_dump(), **self.explicit()})


class UdpConfig(Section):
    bind: IPAddress = "127.0.0.1"
    port: Port = 0
    max_datagram: Annotated[int | None, _opt(_int_in(64, 65507))] = None
    rcvbuf: Annotated[int | None, _opt(_int_in(0, 2**31 - 1))] = 33554432
    sndbuf: Annotated[int | None, _opt(_int_in(0, 2**31 - 1))] = 8388608


class XdpConfig(Section):
    enabled: Flag = True
    interface: Annotated[str | None, _opt(_name)] = None
    queue: Annotated[int, BeforeValidator(_int_in(0, 65535))] = 0
    mode: Annotated[XdpMode, BeforeValidator(_one_of(XdpMode))] = "auto"
    zero_copy: Annotated[Literal["auto"] | bool, BeforeValidator(_zero_copy)] = "auto"


class DpdkConfig(Section):
    """The DPDK port (insane/transports/dpdk.py): EAL arguments (a ``--vdev`` for a virtual
    device, ``-a PCI`` for a NIC), the port's index, and the kernel interface it stands for
    when there is one (default: the ``iface=`` of a ``--vdev``): its address and neighbour
    table are used."""

    enabled: Flag = True
    eal_args: Names = ()
    port: Annotated[int | None, _opt(_int_in(0, 65535))] = None
    interface: Annotated[str | None, _opt(_name)] = None
    #: This host's IPv4 address on the port (default: transports.udp.bind, or the interface's)
    ip: Annotated[str | None, _opt(_name)] = None


class RdmaConfig(Section):
    """The RDMA device port (insane/transports/rdma/transport.py): which device (default: the
    first one listed), which port, which GID (default: chosen, RoCE v2 for this host's IPv4 address
    first), and the buffers: receive buffers posted per peer (its credits) and send buffers
    shared by all peers, each the size of the session's largest datagram."""

    enabled: Flag = True
    device: Annotated[str | None, _opt(_name)] = None
    port: Annotated[int, BeforeValidator(_int_in(1, 255))] = 1
    gid_index: Annotated[int | None, _opt(_int_in(0, 255))] = None
    recv_depth: Annotated[int, BeforeValidator(_int_in(3, 4096))] = 64
    send_depth: Annotated[int, BeforeValidator(_int_in(1, 16384))] = 256


class TransportsConfig(Section):
    udp: UdpConfig = UdpConfig()
    xdp: XdpConfig = XdpConfig()
    dpdk: DpdkConfig = DpdkConfig()
    rdma: RdmaConfig = RdmaConfig()


class MulticastConfig(Section):
    enabled: Flag = True
    group: Annotated[str, BeforeValidator(_multicast_group)] = "239.255.73.78"
    port: Annotated[int, BeforeValidator(_int_in(1, 65535))] = 7446
    ttl: Annotated[int, BeforeValidator(_int_in(0, 255))] = 1
    interfaces: Annotated[tuple[Name, ...] | None, _opt(_list)] = None


class DiscoveryConfig(Section):
    multicast: MulticastConfig = MulticastConfig()
    peers: Annotated[tuple[Peer, ...], BeforeValidator(_list)] = ()
    host_registry: Flag = True
    heartbeat_interval: Seconds = 0.5
    peer_timeout: Seconds = 2.5
    settle: Annotated[float, BeforeValidator(_seconds_or_zero)] = 0.25

    @model_validator(mode="after")
    def _timeout_covers_heartbeats(self) -> DiscoveryConfig:
        if self.peer_timeout <= self.heartbeat_interval:
            raise PydanticCustomError(
                "insane_expected",
                "expected more than heartbeat_interval ({hb}), got {got}",
                {"hb": self.heartbeat_interval, "got": self.peer_timeout, "at": "peer_timeout"},
            )
        return self

    @property
    def peer_addresses(self) -> tuple[tuple[str, int], ...]:
        """``peers`` as ``(host, port)`` tuples (validated at load time)."""
        return tuple(parse_peer(p) for p in self.peers)


class ReliabilityConfig(Section):
    """Tuning of reliable channels (protocol/reliability.py)."""

    retransmit_bytes: Annotated[int, BeforeValidator(_int_in(0, 2**40))] = 64 * 1024 * 1024
    retransmit_age: Seconds = 10.0
    nack_delay: Seconds = 0.002
    nack_interval: Seconds = 0.02
    stall_timeout: Seconds = 0.5
    close_linger: Annotated[float, BeforeValidator(_seconds_or_zero)] = 2.0


class PermissionRules(Section):
    allow: Annotated[tuple[Pattern, ...], BeforeValidator(_list)] = ()
    deny: Annotated[tuple[Pattern, ...], BeforeValidator(_list)] = ()


class IdentityConfig(Section):
    """One identity of the domain: its key, and what it may publish and subscribe to."""

    key_file: Annotated[str | None, _opt(_name)] = None
    key_env: Annotated[str | None, _opt(_name)] = None
    publish: PermissionRules = PermissionRules()
    subscribe: PermissionRules = PermissionRules()


class SecurityConfig(Section):
    """Authentication and encryption of every datagram (protocol/security.py).  The key is
    read from ``key_file`` or the environment variable named by ``key_env``, never written
    in the YAML; it must hold at least 32 bytes (``head -c 32 /dev/urandom > key`` will do)."""

    mode: Annotated[
        Literal["none", "authenticate", "encrypt"],
        BeforeValidator(_one_of(Literal["none", "authenticate", "encrypt"])),
    ] = "none"
    key_file: Annotated[str | None, _opt(_name)] = None
    key_env: Annotated[str | None, _opt(_name)] = None
    #: During a key rollover: the previous key, accepted until ``previous_key_until`` (Unix
    #: time; none: until this file changes).
    previous_key_file: Annotated[str | None, _opt(_name)] = None
    previous_key_until: Annotated[float | None, _opt(_seconds)] = None
    #: Identities with their own keys and permissions; ``identity`` names this session's.
    #: With them, each session seals with its identity's key, and a receiver knows from the
    #: key who sent a datagram, and drops what that identity may not publish.
    identity: Annotated[str | None, _opt(_name)] = None
    identities: dict[str, IdentityConfig] = {}


class LimitsConfig(Section):
    """Bounds on what a session holds, so that no peer or application can make it grow
    without end; reaching one is a clear error (or, for what the network sends, a drop that
    is counted)."""

    max_subscriptions: Annotated[int, BeforeValidator(_int_in(1, 2**31))] = 65536
    max_peers: Annotated[int, BeforeValidator(_int_in(1, 2**31))] = 1024


class MetricsConfig(Section):
    """Prometheus exposition (insane/ops/metrics_http.py). Off unless ``port`` is set. Each process
    takes the first free port of ``port .. port + port_span - 1``; with ``targets_dir`` it also
    writes a Prometheus file_sd target file there."""

    port: Annotated[int | None, _opt(_int_in(0, 65535))] = None
    bind: IPAddress = "127.0.0.1"
    port_span: Annotated[int, BeforeValidator(_int_in(1, 1024))] = 16
    targets_dir: Annotated[str | None, _opt(_name)] = None


class _QoSCache:
    """`Config.qos_for` memo; bounded, and never part of a Config's equality."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, ChannelQoS]] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _QoSCache)

    __hash__ = None  # type: ignore[assignment]


class Config(Section):
    """A whole ``insane.yaml``. ``default`` and ``channels`` hold the rules as written;
    `default_qos`, `channel_qos` and `qos_for` give the resolved QoS."""

    domain: Annotated[int, BeforeValidator(_int_in(0, 2**32 - 1))] = 0
    default: QoSRule = QoSRule()
    channels: dict[Pattern, QoSRule] = {}
    transports: TransportsConfig = TransportsConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    reliability: ReliabilityConfig = ReliabilityConfig()
    security: SecurityConfig = SecurityConfig()
    limits: LimitsConfig = LimitsConfig()
    metrics: MetricsConfig = MetricsConfig()

    _source: str = PrivateAttr(EMBEDDED_DEFAULT)
    _default_qos: ChannelQoS = PrivateAttr(default_factory=ChannelQoS)
    _channel_qos: dict[str, ChannelQoS] = PrivateAttr(default_factory=dict)
    _by_specificity: tuple[tuple[str, ChannelQoS], ...] = PrivateAttr(())
    _cache: _QoSCache = PrivateAttr(default_factory=_QoSCache)

    @model_validator(mode="before")
    @classmethod
    def _null_channels(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "channels" in data and data["channels"] is None:
            return {**data, "channels": {}}
        return data

    def model_post_init(self, context: Any, /) -> None:
        if isinstance(context, Mapping) and isinstance(context.get("source"), str):
            self._source = context["source"]
        self._default_qos = self.default.resolve(ChannelQoS())
        self._channel_qos = {p: r.resolve(self._default_qos) for p, r in self.channels.items()}
        # Stable sort: among equally specific patterns, the one earlier in the file wins.
        ranked = sorted(self._channel_qos.items(), key=lambda kv: specificity(kv[0]), reverse=True)
        self._by_specificity = tuple(ranked)

    @property
    def source(self) -> str:
        """The file this configuration was read from, ``<dict>`` or ``<embedded default>``."""
        return self._source

    @property
    def default_qos(self) -> ChannelQoS:
        """The QoS of channels no pattern matches."""
        return self._default_qos

    @property
    def channel_qos(self) -> dict[str, ChannelQoS]:
        """Each configured pattern's resolved QoS, in file order."""
        return dict(self._channel_qos)

    def qos_for(self, subject: str) -> tuple[str, ChannelQoS]:
        """The most specific configured pattern matching ``subject`` and its QoS, or
        ``("default", default_qos)``. Memoised per subject (bounded)."""
        entries = self._cache.entries
        hit = entries.get(subject)
        if hit is None:
            hit = next(
                ((p, q) for p, q in self._by_specificity if matches(p, subject)),
                ("default", self._default_qos),
            )
            if len(entries) >= _QOS_CACHE_MAX:
                entries.clear()
            entries[subject] = hit
        return hit

    def file_path(self, value: str) -> str:
        """A path written in this configuration (``security.key_file``,
        ``metrics.targets_dir``, ...): relative paths are relative to the YAML file's
        directory, so a service started from anywhere finds its files; with no file behind
        the configuration (a mapping, the default), relative to the working directory."""
        expanded = os.path.expanduser(value)
        if os.path.isabs(expanded) or self._source.startswith("<"):
            return expanded
        return os.path.join(os.path.dirname(os.path.abspath(self._source)), expanded)

    def peer_addresses(self) -> tuple[tuple[str, int], ...]:
        """``discovery.peers`` as ``(host, port)`` tuples."""
        return self.discovery.peer_addresses
