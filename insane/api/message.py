"""The message a subscriber receives.

It is also the message the NATS facade hands to applications (``compat.nats.aio.msg.Msg`` is
this class), so it carries nats-py's surface: ``subject``, ``reply``, ``data``, ``headers``,
``header``, ``sid``, ``respond()``; the JetStream-only operations (``ack``, ``nak``, ``term``,
``in_progress``, ``ack_sync``, ``metadata``) raise :class:`insane.errors.JetStreamMsgError`,
because a broker-less bus has no streams to acknowledge to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from insane import errors
from insane.protocol.speedups import MsgBase

if TYPE_CHECKING:
    pass


class Msg(MsgBase):
    """A received message: ``subject``, ``data``, ``reply``, ``headers``, ``sid``;
    ``respond()`` replies.  ``Msg(subject, data, reply="", headers=None, sid=0, session=None)``.

    The fields live in :class:`insane.protocol.speedups.MsgBase` (a C struct when the native
    fast paths are built, so that the receive path creates messages without running Python
    code).
    """

    __slots__ = ()

    @property
    def header(self) -> dict[str, str] | None:
        """The headers (nats-py's other name for them)."""
        return self.headers

    async def respond(self, data: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Publish ``data`` to this message's reply subject.

        Like nats-py, the reply carries this message's headers unless ``headers`` is given
        (pass ``{}`` to send none).
        """
        if not self.reply:
            raise errors.Error("no reply subject available")
        if self._session is None:
            raise errors.Error("client not set")
        await self._session.publish(
            self.reply, data, headers=self.headers if headers is None else headers
        )

    # ------------------------------------------------------------------ JetStream (not here)

    @property
    def is_acked(self) -> bool:
        """Always False: there is no JetStream acknowledgement on a broker-less bus."""
        return False

    @property
    def metadata(self) -> NoReturn:
        """JetStream metadata: raises :class:`insane.errors.JetStreamMsgError`."""
        raise errors.JetStreamMsgError()

    async def ack(self) -> NoReturn:
        raise errors.JetStreamMsgError()

    async def ack_sync(self, timeout: float = 1.0) -> NoReturn:
        raise errors.JetStreamMsgError()

    async def nak(self, delay: float | None = None) -> NoReturn:
        raise errors.JetStreamMsgError()

    async def in_progress(self) -> NoReturn:
        raise errors.JetStreamMsgError()

    async def term(self) -> NoReturn:
        raise errors.JetStreamMsgError()

    def __repr__(self) -> str:
        return f"<Msg subject={self.subject!r} reply={self.reply!r} data={self.data[:32]!r}>"


#: Characters allowed in a header name (an RFC 7230 token, as nats-py requires).
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def clean_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    """Headers as a publisher's peers receive them, following nats-py's rules: ``None`` for
    none; names must be RFC 7230 tokens (else :class:`errors.BadHeaderError`); values are
    stripped, with CR and LF turned into spaces.  Always a new dict, so a subscriber in the
    same session never shares the publisher's object."""
    if not headers:
        return None
    out: dict[str, str] = {}
    for key, value in headers.items():
        if not key or not _TOKEN_CHARS.issuperset(key):
            raise errors.BadHeaderError(key)
        out[key] = str(value).strip().replace("\r", " ").replace("\n", " ")
    return out
