"""The policy engine: ranking, fallback and its reasons, peers, and `insane qos explain`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from insane.qos import (
    ChannelQoS,
    NoRouteError,
    Route,
    candidate_order,
    choose_route,
    explain,
    load_config,
)
from insane.transports.base import ALL_TRANSPORTS, TransportCapability, TransportName

BOTH = frozenset({"poll", "low"})


def cap(
    name: TransportName,
    available: bool = True,
    *,
    healthy: bool = True,
    consumption: frozenset[str] = BOTH,
    reason: str = "",
) -> TransportCapability:
    return TransportCapability(
        name=name,
        available=available,
        reason=reason,
        kernel_bypass=name != "udp",
        hardware_reliable=name == "rdma",
        consumption=frozenset({"low"}) if name == "udp" else consumption,
        healthy=healthy,
    )


ALL_UP = {n: cap(n) for n in ALL_TRANSPORTS}
EVERY_PEER = frozenset(ALL_TRANSPORTS)

FAST_RELIABLE_POLL = ChannelQoS(datapath="fast", consumption="poll")
FAST_RELIABLE_LOW = ChannelQoS(datapath="fast")
FAST_BE_POLL = ChannelQoS(datapath="fast", reliability="best_effort", consumption="poll")
FAST_BE_LOW = ChannelQoS(datapath="fast", reliability="best_effort")


@pytest.mark.parametrize(
    ("qos", "order"),
    [
        (ChannelQoS(), ("udp",)),
        (ChannelQoS(consumption="poll", reliability="best_effort"), ("udp",)),
        (FAST_RELIABLE_POLL, ("rdma", "dpdk", "xdp", "udp")),
        (FAST_RELIABLE_LOW, ("rdma", "xdp", "dpdk", "udp")),
        (FAST_BE_POLL, ("dpdk", "xdp", "rdma", "udp")),
        (FAST_BE_LOW, ("xdp", "dpdk", "rdma", "udp")),
    ],
)
def test_candidate_order(qos: ChannelQoS, order: tuple[TransportName, ...]) -> None:
    assert candidate_order(qos) == order
    route = choose_route(qos, ALL_UP, EVERY_PEER)
    assert route == Route(order[0], order[0], False, route.reasons)
    assert route.reasons == (route.reasons[0],)
    assert route.reasons[0].startswith(f"chose {order[0]}: ")


def test_sequence_of_capabilities_is_accepted() -> None:
    route = choose_route(FAST_BE_LOW, list(ALL_UP.values()), EVERY_PEER)
    assert route.transport == "xdp"


def test_default_datapath_uses_udp_without_fallback() -> None:
    route = choose_route(ChannelQoS(), ALL_UP, EVERY_PEER)
    assert (route.transport, route.wanted, route.fallback) == ("udp", "udp", False)
    assert route.reasons == ("chose udp: kernel UDP, the datapath this QoS asks for",)


def test_fallback_when_bypass_is_unavailable() -> None:
    local = {
        "rdma": cap("rdma", False, reason="no RDMA device"),
        "dpdk": cap("dpdk", False, reason="librte_eal not found"),
        "xdp": cap("xdp", False, reason="transports.xdp.interface is not set"),
        "udp": cap("udp"),
    }
    route = choose_route(FAST_RELIABLE_LOW, local, EVERY_PEER)
    assert (route.transport, route.wanted, route.fallback) == ("udp", "rdma", True)
    assert route.reasons == (
        "rdma skipped: no RDMA device",
        "xdp skipped: transports.xdp.interface is not set",
        "dpdk skipped: librte_eal not found",
        "chose udp: kernel UDP, the last resort (fallback: wanted rdma)",
    )


def test_missing_capability_is_skipped() -> None:
    route = choose_route(FAST_BE_POLL, {"udp": cap("udp"), "xdp": cap("xdp")}, EVERY_PEER)
    assert route.transport == "xdp"
    assert route.reasons[0] == "dpdk skipped: not present on this host"
    assert route.fallback


def test_unhealthy_is_skipped() -> None:
    local = {**ALL_UP, "rdma": cap("rdma", healthy=False, reason="3 send errors")}
    route = choose_route(FAST_RELIABLE_POLL, local, EVERY_PEER)
    assert route.transport == "dpdk"
    assert route.reasons[0] == "rdma skipped: marked unhealthy after errors (3 send errors)"


def test_lacking_poll_is_skipped_but_udp_serves_any_mode() -> None:
    low_only = frozenset({"low"})
    local = {n: cap(n, consumption=low_only) for n in ALL_TRANSPORTS}
    route = choose_route(FAST_BE_POLL, local, EVERY_PEER)
    assert route.transport == "udp"
    assert "dpdk skipped: does not support poll consumption" in route.reasons
    assert "xdp skipped: does not support poll consumption" in route.reasons
    # The same capabilities serve a low-consumption channel directly.
    assert choose_route(FAST_BE_LOW, local, EVERY_PEER).transport == "xdp"


def test_rdma_needs_the_peer_to_have_rdma() -> None:
    route = choose_route(FAST_RELIABLE_LOW, ALL_UP, {"udp"})
    assert route.transport == "xdp"
    assert route.reasons[0] == "rdma skipped: peer has no RDMA device"
    assert choose_route(FAST_RELIABLE_LOW, ALL_UP, {"rdma", "udp"}).transport == "rdma"


def test_a_failed_rdma_connection_to_one_peer_falls_back_with_its_reason() -> None:
    """Both ends have a device, but the connection between them could not be made (or broke):
    the next candidate, and the reason is the connection's, not "no device"."""
    why = {"rdma": "the RDMA connection to the peer failed: no answer within 3 s"}
    route = choose_route(FAST_RELIABLE_POLL, ALL_UP, EVERY_PEER, unusable=why)
    assert (route.transport, route.wanted, route.fallback) == ("dpdk", "rdma", True)
    assert route.reasons[0] == (
        "rdma skipped: the RDMA connection to the peer failed: no answer within 3 s"
    )
    # kernel UDP cannot be ruled out that way: it is the last resort
    only_udp = {"udp": ALL_UP["udp"]}
    assert choose_route(FAST_RELIABLE_POLL, only_udp, EVERY_PEER, {"udp": "x"}).transport == "udp"


@pytest.mark.parametrize("peer_side", ["udp", "xdp", "dpdk"])
def test_udp_wire_peers_can_receive_any_udp_wire_sender(peer_side: str) -> None:
    local = {**ALL_UP, "rdma": cap("rdma", False)}
    assert choose_route(FAST_BE_POLL, local, {peer_side}).transport == "dpdk"
    assert choose_route(FAST_BE_LOW, local, {peer_side}).transport == "xdp"


def test_rdma_only_peer_gets_rdma_for_best_effort() -> None:
    route = choose_route(FAST_BE_LOW, ALL_UP, {"rdma"})
    assert route.transport == "rdma"
    assert route.reasons[:2] == (
        "xdp skipped: peer has no UDP-wire transport (udp, xdp or dpdk)",
        "dpdk skipped: peer has no UDP-wire transport (udp, xdp or dpdk)",
    )


def test_udp_is_the_last_resort_even_when_marked_unhealthy() -> None:
    local = {"udp": cap("udp", healthy=False)}
    route = choose_route(FAST_BE_LOW, local, EVERY_PEER)
    assert route.transport == "udp"
    assert "nothing else is usable" in route.reasons[-1]


def test_no_route() -> None:
    local = {"udp": cap("udp", False, reason="cannot bind"), "xdp": cap("xdp", False)}
    with pytest.raises(NoRouteError, match="no usable transport") as info:
        choose_route(FAST_BE_LOW, local, EVERY_PEER)
    assert "udp skipped: cannot bind" in info.value.reasons
    with pytest.raises(NoRouteError):
        choose_route(ChannelQoS(), {}, EVERY_PEER)


def test_explain_mentions_pattern_route_and_reasons() -> None:
    cfg = load_config({"channels": {"orders.>": {"qos": ["fast", "reliable"]}}})
    local = {
        "rdma": cap("rdma", False, reason="no RDMA device"),
        "dpdk": cap("dpdk", False, reason="librte_eal not found"),
        "xdp": cap("xdp", False, reason="transports.xdp.interface is not set"),
        "udp": cap("udp"),
    }
    text = explain("orders.eu.new", cfg, local)
    assert "orders.eu.new" in text
    assert '"orders.>"' in text
    assert "<dict>" in text  # where the rule came from
    assert "datapath=fast" in text
    assert "rdma > xdp > dpdk > udp" in text
    assert "route:      udp (fallback, wanted rdma)" in text
    assert "rdma skipped: no RDMA device" in text
    assert "xdp skipped: transports.xdp.interface is not set" in text
    assert "chose udp:" in text
    assert "assumed to have this host's transports: udp" in text


def test_explain_default_and_explicit_peer() -> None:
    cfg = load_config({"channels": {"orders.>": {"qos": ["fast"]}}})
    text = explain("metrics.cpu", cfg, ALL_UP, peer_transports=["udp"])
    assert "no channel pattern matches; the default rule (from <dict>)" in text
    assert "advertises udp" in text
    assert "route:      udp (as wanted)" in text
    text = explain("orders.x", cfg, ALL_UP, peer_transports=["udp"])
    assert "route:      xdp (fallback, wanted rdma)" in text
    assert "rdma skipped: peer has no RDMA device" in text


def test_explain_with_no_route() -> None:
    text = explain("a", load_config(), {"udp": cap("udp", False, reason="cannot bind")})
    assert "route:      none" in text
    assert "udp skipped: cannot bind" in text


# --- property: the chosen transport is usable and nothing usable ranks above it --------------


def usable(
    name: str, qos: ChannelQoS, local: dict[str, TransportCapability], peer: set[str]
) -> bool:
    """The usability rule, restated independently of the engine."""
    c = local.get(name)
    if c is None or not c.available:
        return False
    if name == "udp":
        return True
    if not c.healthy or qos.consumption not in c.consumption:
        return False
    if name == "rdma":
        return "rdma" in peer
    return bool(peer & {"udp", "xdp", "dpdk"})


qos_strategy = st.builds(
    ChannelQoS,
    datapath=st.sampled_from(["default", "fast"]),
    reliability=st.sampled_from(["best_effort", "reliable"]),
    ordering=st.sampled_from(["none", "ordered"]),
    consumption=st.sampled_from(["low", "poll"]),
    overflow=st.sampled_from(["block", "drop", "error"]),
)


@st.composite
def local_strategy(draw: st.DrawFn) -> dict[str, TransportCapability]:
    local = {"udp": cap("udp", healthy=draw(st.booleans()))}
    for name in ("rdma", "dpdk", "xdp"):
        if draw(st.booleans()):
            modes = draw(st.sets(st.sampled_from(["poll", "low"])))
            local[name] = cap(
                name,
                draw(st.booleans()),
                healthy=draw(st.booleans()),
                consumption=frozenset(modes),
            )
    return local


@given(
    qos=qos_strategy,
    local=local_strategy(),
    peer=st.sets(st.sampled_from(list(ALL_TRANSPORTS))),
)
def test_chosen_is_usable_and_best(
    qos: ChannelQoS, local: dict[str, TransportCapability], peer: set[str]
) -> None:
    route = choose_route(qos, local, peer)
    order = candidate_order(qos)
    assert usable(route.transport, qos, local, peer)
    assert route.wanted == order[0]
    assert route.fallback == (route.transport != route.wanted)
    above = order[: order.index(route.transport)]
    assert not any(usable(n, qos, local, peer) for n in above)
    assert len(route.reasons) == len(above) + 1
    assert all(r.startswith(f"{n} skipped: ") for r, n in zip(route.reasons, above, strict=False))
    assert route.reasons[-1].startswith(f"chose {route.transport}: ")
