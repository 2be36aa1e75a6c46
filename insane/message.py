"""The message a subscriber receives."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from insane.session import Session


class Msg:
    """A received message: ``subject``, ``data``, ``reply``, ``headers``; ``respond()`` replies."""

    __slots__ = ("_session", "data", "headers", "reply", "sid", "subject")

    def __init__(
        self,
        subject: str,
        data: bytes,
        reply: str = "",
        headers: dict[str, str] | None = None,
        sid: int = 0,
        session: Session | None = None,
    ) -> None:
        self.subject = subject
        self.data = data
        self.reply = reply
        self.headers = headers
        self.sid = sid
        self._session = session

    async def respond(self, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Publish ``data`` to this message's reply subject."""
        if not self.reply:
            raise ValueError("this message has no reply subject to respond to")
        if self._session is None:
            raise RuntimeError("this message is not attached to a session")
        await self._session.publish(self.reply, data, headers=headers)

    def __repr__(self) -> str:
        return f"<Msg subject={self.subject!r} reply={self.reply!r} data={self.data[:32]!r}>"
