"""Checks tests make on peer processes (tests/agent.py): a metric's value, and a numbered
stream sent one way that must arrive whole, in order and byte-identical."""

from __future__ import annotations

from agentctl import AgentProcess


def metric(agent: AgentProcess, name: str, **labels: str) -> float:
    """The sum of counter ``name`` over the label sets that include ``labels``."""
    return float(agent.ok("metric", name=name, **labels)["value"])


def exchange(sender: AgentProcess, receiver: AgentProcess, subject: str, count: int) -> None:
    """``count`` numbered messages (64 B to 1 MiB) from ``sender`` to ``receiver``."""
    receiver.ok("stream_sub", subject=subject, id=subject)
    sent = sender.ok("stream_pub", subject=subject, count=count, timeout=120)
    got = receiver.ok("stream_wait", id=subject, count=count, wait=60, timeout=90)
    assert got["count"] == count and got["in_order"] and got["sha"] == sent["sha"], got
