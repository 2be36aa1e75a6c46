"""Who may publish and subscribe to what: allow and deny lists of subject patterns per
identity, modelled on NATS permissions.

An identity is a key of the domain (``security.identities``): a datagram opened with an
identity's key comes from that identity.  ``allow`` empty means everything is allowed; a
``deny`` that matches always wins.  A subject (publish) is checked by matching; a
subscription pattern is allowed when an allowed pattern covers it (every subject it could
match is allowed) and no denied pattern covers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from insane.subjects import matches


@lru_cache(maxsize=4096)
def covers(outer: str, inner: str) -> bool:
    """True when every subject matched by pattern ``inner`` is matched by pattern ``outer``."""
    a, b = outer.split("."), inner.split(".")
    for i, tok in enumerate(a):
        if tok == ">":
            return len(b) > i
        if i >= len(b) or b[i] == ">":
            return False
        if tok != "*" and tok != b[i]:
            return False
    return len(a) == len(b)


@dataclass(frozen=True)
class Rules:
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def permits_subject(self, subject: str) -> bool:
        if any(matches(d, subject) for d in self.deny):
            return False
        return not self.allow or any(matches(a, subject) for a in self.allow)

    def permits_pattern(self, pattern: str) -> bool:
        if any(covers(d, pattern) for d in self.deny):
            return False
        return not self.allow or any(covers(a, pattern) for a in self.allow)


@dataclass(frozen=True)
class Permissions:
    publish: Rules = field(default_factory=Rules)
    subscribe: Rules = field(default_factory=Rules)

    def may_publish(self, subject: str) -> bool:
        return self.publish.permits_subject(subject)

    def may_subscribe(self, pattern: str) -> bool:
        return self.subscribe.permits_pattern(pattern)
