"""The policy engine: (channel QoS, local transports, the peer's transports) -> route and reasons.

A pure function, no I/O. The QoS is a soft constraint: the engine walks the candidates best
first and takes the first usable one, falling back to kernel UDP, and says why.

Ranking (`candidate_order`):

- ``datapath: default``: kernel UDP only (``udp``). No bypass is wanted, so never a fallback.
- ``datapath: fast`` and ``reliability: reliable``: ``rdma`` first (the NIC retransmits and
  orders, as in the INSANE paper), then by consumption: ``poll`` prefers ``dpdk`` then ``xdp``,
  ``low`` prefers ``xdp`` then ``dpdk``; then ``udp``.
- ``datapath: fast`` and ``reliability: best_effort``: the UDP-wire bypass technologies first
  (``poll``: ``dpdk``, ``xdp``; ``low``: ``xdp``, ``dpdk``), then ``rdma``, then ``udp``.

A candidate is usable when its local capability exists, is available and healthy, supports the
channel's consumption mode, and the peer can receive it: ``rdma`` needs ``rdma`` among the
peer's transports (both ends need a device); ``xdp`` and ``dpdk`` share the UDP wire, so the
peer needs any UDP-wire transport (``udp``, ``xdp`` or ``dpdk``). A transport can also be
unusable toward one peer for a reason of its own (``unusable``: the RDMA connection to that
peer could not be made, or broke). ``udp`` is the last resort:
usable whenever it is available locally, in any consumption mode (every peer speaks UDP on the
control plane). With nothing usable, `choose_route` raises `NoRouteError`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from insane.qos.model import ChannelQoS, Config
from insane.subjects import validate_subject
from insane.transports.base import ALL_TRANSPORTS, WIRE_OF, TransportCapability, TransportName

#: This host's transports: a mapping by name (as `probe_all` returns) or a plain sequence.
LocalCapabilities = (
    Mapping[str, TransportCapability]
    | Mapping[TransportName, TransportCapability]
    | Sequence[TransportCapability]
)

_WHY: dict[str, str] = {
    "rdma": "RDMA, kernel bypass with hardware reliability; the peer has an RDMA device",
    "dpdk": "DPDK, kernel bypass with busy polling, on the UDP wire the peer receives",
    "xdp": "AF_XDP, kernel bypass on the UDP wire the peer receives",
    "udp": "kernel UDP",
}


@dataclass(frozen=True)
class Route:
    """Where one channel goes toward one peer, and why."""

    transport: TransportName
    wanted: TransportName
    fallback: bool
    reasons: tuple[str, ...]


class NoRouteError(RuntimeError):
    """No candidate transport is usable (not even kernel UDP)."""

    def __init__(self, message: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reasons = reasons


def candidate_order(qos: ChannelQoS) -> tuple[TransportName, ...]:
    """The transports this QoS would use, best first (see the module docstring)."""
    if qos.datapath == "default":
        return ("udp",)
    udp_wire: tuple[TransportName, TransportName] = (
        ("dpdk", "xdp") if qos.consumption == "poll" else ("xdp", "dpdk")
    )
    if qos.reliability == "reliable":
        return ("rdma", *udp_wire, "udp")
    return (*udp_wire, "rdma", "udp")


def _skip_reason(
    name: TransportName,
    qos: ChannelQoS,
    cap: TransportCapability | None,
    peer: Collection[str],
    unusable: Mapping[str, str],
) -> str | None:
    """Why ``name`` is not usable for this channel and peer, or None when it is."""
    if name in unusable and name != "udp":
        return f"{name} skipped: {unusable[name]}"
    if cap is None:
        return f"{name} skipped: not present on this host"
    if not cap.available:
        return f"{name} skipped: {cap.reason or 'not available on this host'}"
    if name == "udp":
        return None
    if not cap.healthy:
        why = f" ({cap.reason})" if cap.reason else ""
        return f"{name} skipped: marked unhealthy after errors{why}"
    if qos.consumption not in cap.consumption:
        return f"{name} skipped: does not support {qos.consumption} consumption"
    if name == "rdma":
        if "rdma" not in peer:
            return "rdma skipped: peer has no RDMA device"
    elif not any(WIRE_OF.get(t) == "udp" for t in peer):
        return f"{name} skipped: peer has no UDP-wire transport (udp, xdp or dpdk)"
    return None


def choose_route(
    qos: ChannelQoS,
    local: LocalCapabilities,
    peer_transports: Collection[str],
    unusable: Mapping[str, str] | None = None,
) -> Route:
    """The first usable candidate for ``qos`` toward a peer advertising ``peer_transports``
    (``unusable``: transports that cannot reach this peer, and why)."""
    caps = _by_name(local)
    order = candidate_order(qos)
    wanted = order[0]
    reasons: list[str] = []
    for name in order:
        skip = _skip_reason(name, qos, caps.get(name), peer_transports, unusable or {})
        if skip is not None:
            reasons.append(skip)
            continue
        why = _WHY[name]
        if name == "udp":
            why += ", the datapath this QoS asks for" if wanted == "udp" else ", the last resort"
            if not caps["udp"].healthy:
                why += " (marked unhealthy, but nothing else is usable)"
        if name != wanted:
            why += f" (fallback: wanted {wanted})"
        reasons.append(f"chose {name}: {why}")
        return Route(transport=name, wanted=wanted, fallback=name != wanted, reasons=tuple(reasons))
    raise NoRouteError(
        "no usable transport for this channel: " + "; ".join(reasons), tuple(reasons)
    )


def explain(
    subject: str,
    config: Config,
    local_caps: LocalCapabilities,
    peer_transports: Collection[str] | None = None,
) -> str:
    """The text of ``insane qos explain SUBJECT``: matched rule, QoS, candidates, route, reasons."""
    validate_subject(subject)
    caps = _by_name(local_caps)
    pattern, qos = config.qos_for(subject)
    if pattern == "default":
        where = f"no channel pattern matches; the default rule (from {config.source})"
    else:
        where = f'"{pattern}" (channels in {config.source})'
    if peer_transports is None:
        peer = sorted((n for n, c in caps.items() if c.available), key=_rank)
        peer_line = "assumed to have this host's transports: " + (", ".join(peer) or "none")
    else:
        peer = sorted(peer_transports, key=_rank)
        peer_line = "advertises " + (", ".join(peer) or "nothing")
    lines = [
        f"subject:    {subject}",
        f"matched:    {where}",
        f"qos:        {qos.describe()}",
        f"candidates: {' > '.join(candidate_order(qos))}",
        f"peer:       {peer_line}",
    ]
    try:
        route = choose_route(qos, caps, peer)
    except NoRouteError as e:
        lines.append("route:      none")
        lines.extend(f"  {r}" for r in e.reasons)
        return "\n".join(lines)
    status = f"fallback, wanted {route.wanted}" if route.fallback else "as wanted"
    lines.append(f"route:      {route.transport} ({status})")
    lines.extend(f"  {r}" for r in route.reasons)
    return "\n".join(lines)


def _by_name(caps: LocalCapabilities) -> dict[str, TransportCapability]:
    if isinstance(caps, Mapping):
        return {str(name): c for name, c in caps.items()}
    return {c.name: c for c in caps}


def _rank(name: str) -> int:
    return ALL_TRANSPORTS.index(name) if name in ALL_TRANSPORTS else len(ALL_TRANSPORTS)
