"""Who gets a message: local subscriptions, remote peers' interest, and queue groups.

The router answers two questions and caches the answers per subject until interest changes:
``plan(subject)`` for a publisher (which local subscriptions, which peers, and which queue
groups to pick a member from) and ``local_targets(subject, queues)`` for a received message
(which of our subscriptions get it). A queue group delivers each message to exactly one
member across all peers: the publisher picks the member, the chosen peer delivers it to one of
its local members of that group.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from insane.protocol.wire import InterestEntry
from insane.subjects import matches, reply_family


@dataclass(eq=False)
class LocalSub:
    """A subscription as the router sees it: ``deliver(subject, data, reply, headers, sid)``
    hands one message to its owner; ``deliver_plain(subject, payloads)``, where the owner has
    one, a run of plain messages (no reply or headers) at once."""

    sid: int
    pattern: str
    queue: str
    deliver: Callable[[str, bytes, str, dict[str, str] | None, int], None]
    deliver_plain: Callable[[str, list[bytes]], None] | None = None


@dataclass
class GroupMembers:
    locals: list[LocalSub] = field(default_factory=list)
    #: One entry per remote member subscription, so a peer with two members weighs double.
    peers: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.locals) + len(self.peers)


@dataclass
class Plan:
    local: list[LocalSub]
    peers: list[int]
    groups: dict[str, GroupMembers]

    @property
    def empty(self) -> bool:
        return not (self.local or self.peers or self.groups)


#: Entries kept per cache before it starts afresh (subjects can be unbounded).
_CACHE_LIMIT = 8192


class Router:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._local: dict[int, LocalSub] = {}
        self._interest: dict[int, InterestEntry] = {}  # (the local subscriptions, as told)
        self._remote: dict[int, list[InterestEntry]] = {}
        #: Peers that are suspect (silent or unreachable): kept in plain plans, so what they
        #: subscribe to is still numbered and buffered for them, but given no queue-group work
        #: and no requests.
        self._suspect: set[int] = set()
        self._plans: dict[str, Plan] = {}
        self._request_plans: dict[str, Plan] = {}
        self._targets: dict[tuple[str, tuple[str, ...]], list[LocalSub]] = {}
        self._rr = itertools.count()
        #: Called after any change of interest (for caches built on top of plans).
        self.on_change: Callable[[], None] | None = None

    # ------------------------------------------------------------------ interest changes

    def _changed(self) -> None:
        self._plans.clear()
        self._request_plans.clear()
        self._targets.clear()
        if self.on_change is not None:
            self.on_change()

    def add_local(self, sub: LocalSub) -> None:
        self._local[sub.sid] = sub
        self._interest[sub.sid] = InterestEntry(sub.sid, sub.pattern, sub.queue)
        self._changed()

    def remove_local(self, sid: int) -> LocalSub | None:
        sub = self._local.pop(sid, None)
        self._interest.pop(sid, None)
        if sub is not None:
            self._changed()
        return sub

    def local_interest(self) -> list[InterestEntry]:
        return list(self._interest.values())

    def set_remote(self, peer_id: int, entries: list[InterestEntry]) -> None:
        self._remote[peer_id] = entries
        self._changed()

    def drop_remote(self, peer_id: int) -> None:
        self._suspect.discard(peer_id)
        if self._remote.pop(peer_id, None) is not None:
            self._changed()

    @property
    def has_suspects(self) -> bool:
        return bool(self._suspect)

    def is_suspect(self, peer_id: int) -> bool:
        return peer_id in self._suspect

    def set_suspect(self, peer_id: int, suspect: bool) -> None:
        if suspect != (peer_id in self._suspect):
            if suspect:
                self._suspect.add(peer_id)
            else:
                self._suspect.discard(peer_id)
            self._changed()

    # ------------------------------------------------------------------ publishing

    def plan(self, subject: str) -> Plan:
        """Where a message to ``subject`` goes: local subscriptions, peers (suspect ones too:
        their streams keep what they miss), and the queue groups (no suspect member)."""
        plan = self._plans.get(subject)
        if plan is None:
            key = reply_family(subject) or subject
            plan = self._plans.get(key)
            if plan is None:
                if len(self._plans) >= _CACHE_LIMIT:
                    self._plans.clear()
                plan = self._plans[key] = self._build_plan(key)
        return plan

    def request_plan(self, subject: str) -> Plan:
        """Where a request to ``subject`` goes: as `plan`, without suspect peers (a request
        wants an answer now; one that waits for a silent peer would time out)."""
        if not self._suspect:
            return self.plan(subject)
        plan = self._request_plans.get(subject)
        if plan is None:
            full = self.plan(subject)
            peers = [p for p in full.peers if p not in self._suspect]
            if len(self._request_plans) >= _CACHE_LIMIT:
                self._request_plans.clear()
            plan = self._request_plans[subject] = Plan(full.local, peers, full.groups)
        return plan

    def _build_plan(self, subject: str) -> Plan:
        local: list[LocalSub] = []
        groups: dict[str, GroupMembers] = {}
        for sub in self._local.values():
            if matches(sub.pattern, subject):
                if sub.queue:
                    groups.setdefault(sub.queue, GroupMembers()).locals.append(sub)
                else:
                    local.append(sub)
        peers: list[int] = []
        for peer_id, entries in self._remote.items():
            plain = False
            suspect = peer_id in self._suspect
            for e in entries:
                if matches(e.pattern, subject):
                    if e.queue:
                        if not suspect:
                            groups.setdefault(e.queue, GroupMembers()).peers.append(peer_id)
                    else:
                        plain = True
            if plain:
                peers.append(peer_id)
        return Plan(local, peers, groups)

    def pick(self, members: GroupMembers) -> LocalSub | int:
        """Choose the one member of a queue group that gets this message."""
        i = self._rng.randrange(len(members))
        if i < len(members.locals):
            return members.locals[i]
        return members.peers[i - len(members.locals)]

    # ------------------------------------------------------------------ receiving

    def local_targets(self, subject: str, queues: tuple[str, ...]) -> list[LocalSub]:
        """Our plain subscriptions matching ``subject``, plus one member of each named group."""
        key = (reply_family(subject) or subject, queues)
        cached = self._targets.get(key)
        if cached is not None and not queues:
            return cached
        plan = self.plan(key[0])
        targets = list(plan.local)
        for q in queues:
            members = plan.groups.get(q)
            if members is not None and members.locals:
                targets.append(members.locals[next(self._rr) % len(members.locals)])
        if not queues:
            if len(self._targets) >= _CACHE_LIMIT:
                self._targets.clear()
            self._targets[key] = targets
        return targets
