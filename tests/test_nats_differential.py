"""One NATS scenario suite, two implementations: nats-py against a real nats-server (``real``)
and ``compat.nats`` with no server at all (``facade``). Both must observe the same results,
equal to the expected ones, with the roles of each scenario in two processes on this host,
and (the scenarios marked ``netns``) on two hosts in network namespaces joined by a veth pair.

The scenarios are in tests/nats_scenarios.py, the processes that run them in
tests/nats_runner.py, the plumbing in tests/nats_harness.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from nats_harness import NatsServer, RunnerError, ScenarioRunner, run_scenario
from nats_scenarios import SCENARIOS
from netns import Host, Lan

IMPLS = ("real", "facade")
#: What the facade is given as ``servers``: nothing listens there, and nothing may be needed.
NO_SERVER = "nats://127.0.0.1:4222"

#: (topology, scenario, impl) -> result, so the second implementation is compared to the first.
_results: dict[tuple[str, str, str], Any] = {}


def facade_config(path: Path, domain: int, host: Host | None = None) -> dict[str, str]:
    """Write an insane.yaml for facade runners; return the environment that selects it."""
    cfg: dict[str, Any] = {"domain": domain}
    if host is not None:
        cfg["transports"] = {"udp": {"bind": host.ip}}
        cfg["discovery"] = {"host_registry": False}
    path.write_text(yaml.safe_dump(cfg))
    return {"INSANE_CONFIG": str(path)}


def check(topology: str, name: str, impl: str, result: Any) -> None:
    _results[(topology, name, impl)] = result
    expected = SCENARIOS[name].expected
    assert result == expected, f"{impl} differs from the expected result"
    other = _results.get((topology, name, "real" if impl == "facade" else "facade"))
    if other is not None:
        assert result == other, "real and facade observed different results"


# ---------------------------------------------------------------------------- one host


@pytest.fixture(scope="module")
def runners(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], tuple[ScenarioRunner, ScenarioRunner, str]]]:
    """``runners(impl) -> (sub_runner, pub_runner, servers)``, started on first use."""
    started: dict[str, tuple[ScenarioRunner, ScenarioRunner, str]] = {}
    env = facade_config(tmp_path_factory.mktemp("nats") / "insane.yaml", random.randrange(1, 2**32))

    def get(impl: str) -> tuple[ScenarioRunner, ScenarioRunner, str]:
        if impl not in started:
            if impl == "real":
                servers = request.getfixturevalue("nats_server")
                e: dict[str, str] = {}
            else:
                servers, e = NO_SERVER, env
            started[impl] = (
                ScenarioRunner(impl, env=e, label=f"{impl} sub"),
                ScenarioRunner(impl, env=e, label=f"{impl} pub"),
                servers,
            )
        return started[impl]

    def forget(impl: str) -> None:
        pair = started.pop(impl, None)
        if pair is not None:
            pair[0].stop()
            pair[1].stop()

    get.forget = forget  # type: ignore[attr-defined]
    yield get
    for impl in list(started):
        forget(impl)


def _params() -> Iterator[Any]:
    for name, sc in SCENARIOS.items():
        for impl in IMPLS:
            marks = []
            if impl == "facade" and sc.facade_xfail:
                marks.append(pytest.mark.xfail(reason=sc.facade_xfail, strict=True))
            yield pytest.param(name, impl, id=f"{name}-{impl}", marks=marks)


@pytest.mark.parametrize(("name", "impl"), list(_params()))
def test_scenario_across_processes(
    name: str, impl: str, runners: Callable[[str], tuple[ScenarioRunner, ScenarioRunner, str]]
) -> None:
    sub, pub, servers = runners(impl)
    sc = SCENARIOS[name]
    try:
        result = run_scenario(name, sub, pub, servers, has_sub=sc.sub is not None)
    except RunnerError:
        runners.forget(impl)  # type: ignore[attr-defined]  # a stuck role: start afresh
        raise
    check("loopback", name, impl, result)


# ---------------------------------------------------------------------------- two hosts


@pytest.mark.privileged
@pytest.mark.parametrize("impl", IMPLS)
def test_scenarios_across_namespaces(impl: str, netns_pair: Lan, tmp_path: Path) -> None:
    """The ``netns`` scenarios with the ``sub`` role on host a and the ``pub`` role on host b.
    Real NATS: nats-server runs on host a and both connect to it over the veth. Facade: the two
    INSANE peers bind to their host's address and find each other by multicast."""
    ha, hb = netns_pair
    server: NatsServer | None = None
    env_a: dict[str, str] = {}
    env_b: dict[str, str] = {}
    if impl == "real":
        server = NatsServer(ha.ip, namespace=ha)
        servers = server.start()
    else:
        servers = NO_SERVER
        domain = random.randrange(1, 2**32)
        env_a = facade_config(tmp_path / "a.yaml", domain, ha)
        env_b = facade_config(tmp_path / "b.yaml", domain, hb)
    sub = pub = None
    results: dict[str, Any] = {}
    try:
        sub = ScenarioRunner(impl, cmd_prefix=ha.wrap([]), env=env_a, label=f"{impl} sub on a")
        pub = ScenarioRunner(impl, cmd_prefix=hb.wrap([]), env=env_b, label=f"{impl} pub on b")
        for name, sc in SCENARIOS.items():
            if sc.netns:
                results[name] = run_scenario(name, sub, pub, servers, has_sub=sc.sub is not None)
    finally:
        for r in (sub, pub):
            if r is not None:
                r.stop()
        if server is not None:
            server.stop()
    assert results, "no scenario is marked netns"
    for name, result in results.items():
        check("netns", name, impl, result)
