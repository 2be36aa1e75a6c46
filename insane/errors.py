"""The errors the public API raises, shaped after nats-py's so the facade maps them 1:1."""

from __future__ import annotations

import builtins

from insane.subjects import SubjectError


class InsaneError(Exception):
    """Base class of every error this package raises on purpose."""


class TimeoutError(InsaneError, builtins.TimeoutError):
    """A request, ``next_msg`` or flush did not complete in time."""


class NoRespondersError(InsaneError):
    """A request was sent on a subject nobody subscribes to."""


class ConnectionClosedError(InsaneError):
    """The session is closed (or draining) and cannot do this any more."""


class BadSubjectError(InsaneError, SubjectError):
    """A subject or pattern breaks the naming rules."""


class MaxPayloadError(InsaneError):
    """The message is larger than the configured maximum payload."""


class SlowConsumerError(InsaneError):
    """A subscription's pending limits were hit and messages were dropped for it."""

    def __init__(self, subject: str, sid: int, reason: str = "") -> None:
        super().__init__(
            f"slow consumer on {subject!r} (sid {sid}){': ' + reason if reason else ''}"
        )
        self.subject = subject
        self.sid = sid


class BadSubscriptionError(InsaneError):
    """An operation on a subscription that is no longer active."""
