"""The errors the public API raises.

The classes carry nats-py's names and hierarchy (``nats/errors.py``): ``Error`` is the base,
``TimeoutError`` is also the built-in (= ``asyncio``) ``TimeoutError``, ``FlushTimeoutError`` and
``DrainTimeoutError`` are ``TimeoutError``\\ s, and so on. ``compat.nats.errors`` re-exports these
very classes, so an application written for nats-py catches what INSANE raises with the
``except nats.errors.X`` clauses it already has, and no error is ever translated.

Differences from nats-py: an error raised with a message shows that message (nats-py's show a
fixed text, which is the default here); ``BadSubjectError`` is also an ``insane.SubjectError``
(a ``ValueError``); :class:`BrokerFeatureError` is ours: JetStream, key-value and object stores
are features of a NATS server, which a broker-less bus does not have.
"""

from __future__ import annotations

import builtins
from typing import Any

from insane.subjects import SubjectError

__all__ = [
    "AuthorizationError",
    "BadHeaderError",
    "BadSubjectError",
    "BadSubscriptionError",
    "BadTimeoutError",
    "BrokerFeatureError",
    "ConnectionClosedError",
    "ConnectionDrainingError",
    "ConnectionReconnectingError",
    "DrainTimeoutError",
    "Error",
    "FlushTimeoutError",
    "InsaneError",
    "InvalidCallbackTypeError",
    "InvalidUserCredentialsError",
    "JetStreamMsgError",
    "JsonParseError",
    "MaxPayloadError",
    "MessagesLostError",
    "MsgAlreadyAckdError",
    "NoRespondersError",
    "NoServersError",
    "NotJSMessageError",
    "OutboundBufferLimitError",
    "PermissionDeniedError",
    "ProtocolError",
    "SecureConnFailedError",
    "SecureConnRequiredError",
    "SecureConnWantedError",
    "ServerNotInPoolError",
    "SlowConsumerError",
    "StaleConnectionError",
    "TimeoutError",
    "UnexpectedEOF",
]


class Error(Exception):
    """Base class of every error this package raises on purpose (nats-py: ``nats.errors.Error``)."""

    #: What ``str()`` shows when the error was raised without a message (nats-py's text).
    default_message = "nats: error"

    def __str__(self) -> str:
        if self.args and self.args[0] not in (None, ""):
            return str(self.args[0])
        return self.default_message


#: The name this class had before it took nats-py's.
InsaneError = Error


class TimeoutError(Error, builtins.TimeoutError):
    """A request, ``next_msg`` or flush did not complete in time (also ``asyncio.TimeoutError``)."""

    default_message = "nats: timeout"


class NoRespondersError(Error):
    """A request was sent on a subject nobody subscribes to."""

    default_message = "nats: no responders available for request"


class StaleConnectionError(Error):
    default_message = "nats: stale connection"


class OutboundBufferLimitError(Error):
    default_message = "nats: outbound buffer limit exceeded"


class UnexpectedEOF(StaleConnectionError):
    default_message = "nats: unexpected EOF"


class FlushTimeoutError(TimeoutError):
    """``flush()`` did not complete in time."""

    default_message = "nats: flush timeout"


class ConnectionClosedError(Error):
    """The session is closed and cannot do this any more."""

    default_message = "nats: connection closed"


class SecureConnRequiredError(Error):
    default_message = "nats: secure connection required"


class SecureConnWantedError(Error):
    default_message = "nats: secure connection not available"


class SecureConnFailedError(Error):
    default_message = "nats: secure connection failed"


class BadSubscriptionError(Error):
    """An operation on a subscription that is no longer active."""

    default_message = "nats: invalid subscription"


class BadSubjectError(Error, SubjectError):
    """A subject or pattern breaks the naming rules (also an ``insane.SubjectError``)."""

    default_message = "nats: invalid subject"


class BadHeaderError(Error):
    """A header name that is not a valid token."""

    def __init__(self, key: str = "") -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"nats: invalid header: {self.key!r}" if self.key else "nats: invalid header"


class SlowConsumerError(Error):
    """A subscription's pending limits were hit and a message was dropped for it.

    nats-py's signature: ``SlowConsumerError(subject, reply, sid, sub)``: the dropped message's
    subject and reply, and the subscription.
    """

    def __init__(
        self,
        subject: str = "",
        reply: str = "",
        sid: int = 0,
        sub: Any = None,
        reason: str = "",
    ) -> None:
        super().__init__(subject, reply, sid)
        self.subject = subject
        self.reply = reply
        self.sid = sid
        self.sub = sub
        self.reason = reason

    def __str__(self) -> str:
        text = (
            "nats: slow consumer, messages dropped "
            f"subject: {self.subject}, sid: {self.sid}, sub: {self.sub}"
        )
        return f"{text} ({self.reason})" if self.reason else text


class BadTimeoutError(Error):
    default_message = "nats: timeout invalid"


class AuthorizationError(Error):
    default_message = "nats: authorization failed"


class NoServersError(Error):
    default_message = "nats: no servers available for connection"


class JsonParseError(Error):
    default_message = "nats: connect message, json parse err"


class MaxPayloadError(Error):
    """The message is larger than the maximum payload."""

    default_message = "nats: maximum payload exceeded"


class DrainTimeoutError(TimeoutError):
    default_message = "nats: draining connection timed out"


class ConnectionDrainingError(Error):
    default_message = "nats: connection draining"


class ConnectionReconnectingError(Error):
    default_message = "nats: connection reconnecting"


class InvalidUserCredentialsError(Error):
    default_message = "nats: invalid user credentials"


class InvalidCallbackTypeError(Error):
    default_message = "nats: callbacks must be coroutine functions"


class ProtocolError(Error):
    default_message = "nats: protocol error"


class ServerNotInPoolError(Error):
    default_message = "nats: selected server is not in the pool"


class NotJSMessageError(Error):
    """A JetStream-only operation (ack, nak, metadata...) on a message not from a stream."""

    default_message = "nats: not a JetStream message"


class MsgAlreadyAckdError(Error):
    def __init__(self, msg: Any = None) -> None:
        super().__init__()
        self._msg = msg

    def __str__(self) -> str:
        return f"nats: message was already acknowledged: {self._msg}"


class BrokerFeatureError(Error):
    """A feature of a NATS *server* (JetStream streams and consumers, acknowledgements,
    key-value and object stores) that a broker-less bus does not provide."""

    default_message = (
        "insane: JetStream, key-value and object stores are features of a NATS server; "
        "a broker-less bus has no server to keep streams, so they are not provided"
    )


class JetStreamMsgError(BrokerFeatureError, NotJSMessageError):
    """``ack``, ``nak``, ``term``, ``in_progress``, ``metadata``... on a message: every message
    on a broker-less bus is a core message, never a JetStream one (nats-py raises
    ``NotJSMessageError`` for those; this is one, and a :class:`BrokerFeatureError` too)."""

    default_message = (
        "insane: acknowledgements and stream metadata are JetStream features of a NATS server; "
        "messages on a broker-less bus are core NATS messages"
    )


class MessagesLostError(Error):
    """Messages of a reliable stream will never be delivered, reported to ``error_cb``.

    On a subscriber (``sent`` false): messages from the publisher ``peer`` that will never
    arrive: the publisher no longer had them (its retransmit buffer is bounded by bytes and
    age), or it went away. The stream goes on after them. On a publisher (``sent`` true):
    messages to the subscriber ``peer`` that it discarded before they were acknowledged (the
    subscriber was silent past the retransmit buffer's bounds, or is gone), or handed to a
    connection that broke before confirming them (RDMA).

    ``messages`` is their number; None when nobody can tell (the publisher is gone, or lost
    its state); ``datagrams`` how many datagrams they filled, where that is known. ``count``
    is ``messages``, or ``datagrams`` when the number of messages is unknown."""

    def __init__(
        self,
        peer: str = "",
        messages: int | None = 0,
        detail: str = "",
        *,
        sent: bool = False,
        datagrams: int = 0,
    ) -> None:
        super().__init__(peer, messages, detail)
        self.peer = peer
        self.messages = messages
        self.datagrams = datagrams
        self.detail = detail
        self.sent = sent

    @property
    def count(self) -> int:
        return self.messages if self.messages is not None else self.datagrams

    def __str__(self) -> str:
        way = "to" if self.sent else "from"
        what = (
            f"{self.messages} message(s)"
            if self.messages is not None
            else f"an unknown number of messages in {self.datagrams} datagram(s)"
        )
        return f"insane: {what} {way} {self.peer} lost for good ({self.detail})"


class PermissionDeniedError(Error):
    """This session's identity may not publish to that subject, or subscribe to that pattern
    (``security.identities``: its ``publish`` and ``subscribe`` rules)."""
