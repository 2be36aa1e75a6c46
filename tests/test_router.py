"""Routing decisions: plain subscribers, remote interest, queue groups."""

from __future__ import annotations

import random
from collections import Counter

from insane.protocol.router import LocalSub, Router
from insane.protocol.wire import InterestEntry


def sub(sid: int, pattern: str, queue: str = "", sink: list[object] | None = None) -> LocalSub:
    out = sink if sink is not None else []
    return LocalSub(sid, pattern, queue, out.append)


def test_plan_lists_local_and_remote_matches() -> None:
    r = Router()
    r.add_local(sub(1, "a.*"))
    r.add_local(sub(2, "b.>"))
    r.set_remote(10, [InterestEntry(1, "a.>", "")])
    r.set_remote(11, [InterestEntry(1, "c", "")])
    plan = r.plan("a.x")
    assert [s.sid for s in plan.local] == [1]
    assert plan.peers == [10]
    assert r.plan("zzz").empty


def test_cache_is_invalidated_by_interest_changes() -> None:
    r = Router()
    assert r.plan("a").empty
    r.set_remote(10, [InterestEntry(1, "a", "")])
    assert r.plan("a").peers == [10]
    r.drop_remote(10)
    assert r.plan("a").empty


def test_queue_group_picks_one_member_across_local_and_remote() -> None:
    r = Router(rng=random.Random(1))
    r.add_local(sub(1, "jobs", "g"))
    r.set_remote(10, [InterestEntry(1, "jobs", "g")])
    r.set_remote(11, [InterestEntry(1, "jobs", "g"), InterestEntry(2, "jobs", "")])
    plan = r.plan("jobs")
    assert plan.peers == [11]
    picks: Counter[object] = Counter()
    for _ in range(3000):
        m = r.pick(plan.groups["g"])
        picks["local" if isinstance(m, LocalSub) else m] += 1
    assert set(picks) == {"local", 10, 11}
    assert all(n > 800 for n in picks.values())


def test_receiver_delivers_to_plain_subs_and_one_member_of_each_named_group() -> None:
    r = Router()
    r.add_local(sub(1, "jobs"))
    r.add_local(sub(2, "jobs", "g"))
    r.add_local(sub(3, "jobs", "g"))
    r.add_local(sub(4, "jobs", "h"))
    assert [s.sid for s in r.local_targets("jobs", ())] == [1]
    chosen = [tuple(s.sid for s in r.local_targets("jobs", ("g",))) for _ in range(4)]
    assert all(c[0] == 1 and c[1] in (2, 3) and len(c) == 2 for c in chosen)
    assert {c[1] for c in chosen} == {2, 3}
    assert [s.sid for s in r.local_targets("jobs", ("g", "h"))][-1] == 4
    assert [s.sid for s in r.local_targets("jobs", ("unknown",))] == [1]
