"""Subject names and patterns: NATS rules for validation and wildcard matching.

A subject is dot-separated tokens (``orders.eu.new``). Patterns may use ``*`` for exactly one
token and ``>`` (last token only) for one or more remaining tokens. Tokens are non-empty and
contain no whitespace. ``*`` or ``>`` inside a longer token (``a.b*``) is literal in a subject
one publishes to, and refused in a subscription pattern (as nats-py does).
"""

from __future__ import annotations

from functools import lru_cache

_FORBIDDEN = frozenset(" \t\r\n\f\v")


class SubjectError(ValueError):
    """A subject or pattern that breaks the NATS naming rules."""


def _check_tokens(subject: str, *, wildcards: bool) -> tuple[str, ...]:
    if not isinstance(subject, str):
        raise SubjectError(f"subject must be a str, got {type(subject).__name__}")
    if not subject:
        raise SubjectError("subject must not be empty")
    tokens = tuple(subject.split("."))
    last = len(tokens) - 1
    for i, tok in enumerate(tokens):
        if not tok:
            raise SubjectError(f"invalid subject {subject!r}: empty token")
        if _FORBIDDEN.intersection(tok):
            raise SubjectError(f"invalid subject {subject!r}: whitespace in token {tok!r}")
        if wildcards and tok not in ("*", ">") and ("*" in tok or ">" in tok):
            raise SubjectError(f"invalid pattern {subject!r}: wildcard inside token {tok!r}")
        if tok in ("*", ">"):
            if not wildcards:
                raise SubjectError(f"invalid subject {subject!r}: wildcards are not allowed here")
            if tok == ">" and i != last:
                raise SubjectError(f"invalid subject {subject!r}: '>' must be the last token")
    return tokens


@lru_cache(maxsize=4096)
def validate_subject(subject: str) -> str:
    """Check a subject one can publish to (no wildcards); return it unchanged."""
    _check_tokens(subject, wildcards=False)
    return subject


@lru_cache(maxsize=4096)
def validate_pattern(pattern: str) -> str:
    """Check a subscription pattern (wildcards allowed); return it unchanged."""
    _check_tokens(pattern, wildcards=True)
    return pattern


def is_literal(pattern: str) -> bool:
    """True when the pattern has no wildcard token."""
    return not any(tok in ("*", ">") for tok in pattern.split("."))


@lru_cache(maxsize=65536)
def _split(s: str) -> tuple[str, ...]:
    return tuple(s.split("."))


def matches(pattern: str, subject: str) -> bool:
    """True when ``subject`` (a literal subject) is matched by ``pattern``."""
    if pattern == subject:
        return True
    ptoks = _split(pattern)
    stoks = _split(subject)
    for i, p in enumerate(ptoks):
        if p == ">":
            return len(stoks) > i
        if i >= len(stoks):
            return False
        if p != "*" and p != stoks[i]:
            return False
    return len(ptoks) == len(stoks)


def specificity(pattern: str) -> tuple[tuple[int, ...], int]:
    """A sort key: higher means more specific. Literal beats ``*`` beats ``>``, token by token,
    and at equal prefixes the longer pattern wins."""
    ranks = tuple(0 if t == ">" else 1 if t == "*" else 2 for t in _split(pattern))
    return ranks, len(ranks)


#: Request reply subjects are ``_INBOX.<requester>.<digits>``: one per request.
REPLY_PREFIX = "_INBOX."


def reply_family(subject: str) -> str | None:
    """The shared cache key of a request reply subject, or None for any other subject.

    ``request()`` sends replies to ``_INBOX.<requester>.<n>`` with a fresh ``n`` each time;
    caching routes and channels per such subject would mean a cache miss per request and a
    cache that grows without end.  All of them route alike (to the subscribers of the
    requester's inbox wildcard), so they share the key ``_INBOX.<requester>.0``.  A literal
    subscription to one numeric reply subject is therefore not supported (nats-py never
    makes one: its inboxes from ``new_inbox()`` are not numeric).
    """
    if not subject.startswith(REPLY_PREFIX):
        return None
    head, _, last = subject.rpartition(".")
    if not last.isdigit() or head.count(".") != 1:
        return None
    return head + ".0"
