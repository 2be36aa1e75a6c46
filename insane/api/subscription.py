"""A subscription: a buffer of pending messages, consumed by a callback, ``next_msg`` or
``async for msg in sub.messages``, with NATS's pending limits and auto-unsubscribe."""

from __future__ import annotations

import asyncio
import collections
import inspect
from asyncio.tasks import (  # type: ignore[attr-defined]
    _current_tasks,
    _enter_task,
    _leave_task,
)
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Protocol

from insane import errors
from insane.api.deadlines import Deadlines
from insane.api.message import Msg
from insane.protocol.speedups import run_callback, run_plain

if TYPE_CHECKING:
    from insane.api.session import Session

Callback = Callable[[Msg], Awaitable[None] | None]

DEFAULT_PENDING_MSGS_LIMIT = 512 * 1024
DEFAULT_PENDING_BYTES_LIMIT = 128 * 1024 * 1024


class Owner(Protocol):
    """What a subscription asks of its session (besides its public API, which the messages
    it hands out use to answer)."""

    @property
    def deadlines(self) -> Deadlines: ...
    def callback_error(self, sub: Subscription, exc: Exception) -> None: ...
    def remove_subscription(self, sub: Subscription) -> None: ...
    def slow_consumer(self, sub: Subscription, msg: Msg) -> None: ...
    def wake(self) -> None:
        """A waiting task must run now (a busy-polling spin stops)."""
    def flush_now(self) -> None:
        """What was published leaves now (the task is about to block)."""


class Subscription:
    def __init__(
        self,
        session: Session,
        owner: Owner,
        sid: int,
        subject: str,
        queue: str = "",
        cb: Callback | None = None,
        *,
        pending_msgs_limit: int = DEFAULT_PENDING_MSGS_LIMIT,
        pending_bytes_limit: int = DEFAULT_PENDING_BYTES_LIMIT,
    ) -> None:
        self._session = session
        self._owner = owner
        self.sid = sid
        self.subject = subject
        self.queue = queue
        self._cb = cb
        self._async_cb = cb is not None and inspect.iscoroutinefunction(cb)
        self.pending_msgs_limit = pending_msgs_limit
        self.pending_bytes_limit = pending_bytes_limit
        self._pending: collections.deque[Msg] = collections.deque()
        self._pending_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._received = 0
        self._max_msgs = 0
        self._closed = False  # no more messages will be added
        self._dropped = 0
        self._loop = asyncio.get_running_loop()
        self._worker: asyncio.Task[None] | None = None
        # An async callback runs eagerly, inside the receive path, until it first suspends
        # (most never do: they publish a reply and return).  One that suspends is finished by
        # the worker task, and later messages queue behind it, so callbacks still run one at
        # a time and in order, as in nats-py.
        self._busy = False
        self._suspended: tuple[Coroutine[Any, Any, Any], Any] | None = None
        if self._async_cb:
            self._worker = self._loop.create_task(self._run_callbacks())

    # ------------------------------------------------------------------ state

    @property
    def pending_msgs(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def delivered(self) -> int:
        """Messages that reached this subscription (NATS counts them on arrival)."""
        return self._received

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ input (from the session)

    def _deliver(
        self, subject: str, data: bytes, reply: str, headers: dict[str, str] | None, sid: int
    ) -> None:
        """A message from the node (the receive path, or a local publish)."""
        msg = Msg(subject, data, reply, headers, sid, self._session)
        cb = self._cb
        if cb is None or self._pending or self._busy or self._closed:
            self._enqueue(msg)
            return
        if len(msg.data) >= self.pending_bytes_limit:
            self._overflow(msg)
            return
        self._received += 1
        if self._async_cb:
            loop = self._loop
            if _current_tasks.get(loop) is not None:
                # Delivered from inside a task (a local publish): the worker runs it.
                self._received -= 1
                self._enqueue(msg)
                return
            # Run it now, as the worker task, until it finishes or suspends.
            worker = self._worker
            assert worker is not None and cb is not None
            _enter_task(loop, worker)
            try:
                suspended = run_callback(cb, msg)
            except Exception as exc:  # a failing callback must not break the receive path
                self._owner.callback_error(self, exc)
            else:
                if suspended is not None:
                    self._busy = True
                    self._suspended = suspended
                    self._wake()
            finally:
                _leave_task(loop, worker)
        else:
            try:
                cb(msg)
            except Exception as exc:
                self._owner.callback_error(self, exc)
        if self._max_msgs and self._received >= self._max_msgs:
            self._owner.remove_subscription(self)
            self._finish()

    def _deliver_plain(self, subject: str, payloads: list[bytes]) -> None:
        """Deliver a run of plain messages (no reply or headers) from the receive path."""
        session = self._session
        sid = self.sid
        cb = self._cb
        loop = self._loop
        if (
            not self._async_cb
            or self._pending
            or self._busy
            or self._closed
            or self._max_msgs
            or _current_tasks.get(loop) is not None
        ):
            for p in payloads:
                self._deliver(subject, p, "", None, sid)
            return
        # The usual case, in one go: each callback runs now, as the worker task, until it
        # finishes; if one suspends, the rest queue behind it for the worker.
        limit = self.pending_bytes_limit
        worker = self._worker
        assert worker is not None and cb is not None
        i, n = 0, len(payloads)
        _enter_task(loop, worker)
        try:
            while i < n:
                j, outcome, value = run_plain(cb, Msg, subject, payloads, i, sid, session, limit)
                self._received += j - i  # (run_plain ran the callbacks of i..j-1)
                i = j + 1
                if outcome == 0:
                    break
                if outcome == 1:
                    self._overflow(Msg(subject, payloads[j], "", None, sid, session))
                elif outcome == 2:  # a failing callback must not break the receive path
                    self._received += 1
                    self._owner.callback_error(self, value)
                else:  # suspended: the worker finishes it, the rest queue behind it
                    self._received += 1
                    self._busy = True
                    self._suspended = value
                    self._wake()
                    break
        finally:
            _leave_task(loop, worker)
        for p in payloads[i:]:
            self._enqueue(Msg(subject, p, "", None, sid, session))

    def _enqueue(self, msg: Msg) -> None:
        if self._closed:
            return
        if (
            len(self._pending) >= self.pending_msgs_limit
            or self._pending_bytes + len(msg.data) >= self.pending_bytes_limit
        ):
            self._overflow(msg)
            return
        self._received += 1
        self._pending.append(msg)
        self._pending_bytes += len(msg.data)
        self._wake()
        if self._max_msgs and self._received >= self._max_msgs:
            self._owner.remove_subscription(self)
            self._finish()

    def _overflow(self, msg: Msg) -> None:
        """Pending limits hit: drop ``msg`` and report it (it still counts as delivered, as in
        nats-py, which counts messages on arrival)."""
        self._received += 1
        self._dropped += 1
        self._owner.slow_consumer(self, msg)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
            self._owner.wake()  # a poll-mode spin stops: the waiter must run

    def _finish(self) -> None:
        """No more messages will arrive; consumers finish what is pending, then stop."""
        self._closed = True
        self._wake()

    async def _wait(self, timeout: float | None = None) -> None:
        # About to block: whatever this task published leaves now, not a loop turn later.
        self._owner.flush_now()
        self._waiter = self._loop.create_future()
        if timeout is not None:
            self._owner.deadlines.add(timeout, self._waiter)
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _pop(self) -> Msg:
        msg = self._pending.popleft()
        self._pending_bytes -= len(msg.data)
        return msg

    async def _run_callbacks(self) -> None:
        cb = self._cb
        assert cb is not None
        while True:
            self._busy = True
            if self._suspended is not None:
                coro, yielded = self._suspended
                self._suspended = None
                try:
                    await _Resume(coro, yielded)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a failing callback must not kill the subscription
                    self._owner.callback_error(self, exc)
            while self._pending:
                msg = self._pop()
                try:
                    await cb(msg)  # type: ignore[misc]
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._owner.callback_error(self, exc)
            self._busy = False
            if self._closed:
                self._owner.flush_now()
                return
            await self._wait()

    # ------------------------------------------------------------------ consumption

    async def next_msg(self, timeout: float | None = 1.0) -> Msg:
        """The next pending message; raises ``errors.TimeoutError`` when none comes in time."""
        if self._cb is not None:
            raise errors.InsaneError(
                "next_msg() is not available on a subscription with a callback"
            )
        if self._pending:
            return self._pop()
        if self._session.is_closed:
            raise errors.ConnectionClosedError()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        # An unsubscribed (or auto-unsubscribed) subscription gets nothing more: like nats-py,
        # next_msg then waits out its timeout.
        while not self._pending:
            if self._session.is_closed:
                raise errors.ConnectionClosedError()
            if deadline is None:
                await self._wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise errors.TimeoutError("no message in time")
            # The session's shared deadlines wake the waiter: no timer or task per call.
            await self._wait(remaining)
            if self._pending:
                self._owner.deadlines.finished()
        return self._pop()

    @property
    def messages(self) -> AsyncIterator[Msg]:
        """Iterate over messages until the subscription is unsubscribed, drained or closed."""
        if self._cb is not None:
            raise errors.InsaneError("messages is not available on a subscription with a callback")
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Msg]:
        while True:
            while self._pending:
                yield self._pop()
            if self._closed:
                return
            await self._wait()

    # ------------------------------------------------------------------ lifecycle

    async def unsubscribe(self, limit: int = 0) -> None:
        """Stop now, or (``limit`` > 0) after ``limit`` messages in total have arrived.

        Stopping now drops what is pending; a ``limit`` already reached stops the subscription
        but leaves what is pending to ``next_msg`` (as nats-py does).
        """
        if self._session.is_closed:
            raise errors.ConnectionClosedError()
        if self._closed:
            raise errors.BadSubscriptionError("subscription is already closed")
        if limit > 0 and self._received < limit:
            self._max_msgs = limit
            return
        self._owner.remove_subscription(self)
        if limit <= 0:
            self._pending.clear()
            self._pending_bytes = 0
        self._finish()
        if limit <= 0 or not self._pending:
            await self._stop_worker()

    async def drain(self) -> None:
        """Stop receiving, hand every pending message to the consumer, then finish."""
        if self._session.is_closed:
            raise errors.ConnectionClosedError()
        if not self._closed:
            self._owner.remove_subscription(self)
            self._finish()
        if self._worker is not None:
            await asyncio.shield(self._worker)
        else:
            while self._pending and self._cb is None and self._waiter is not None:
                await asyncio.sleep(0)

    async def _stop_worker(self) -> None:
        w = self._worker
        if w is not None and not w.done() and w is not asyncio.current_task():
            w.cancel()
            try:
                await w
            except asyncio.CancelledError:
                pass

    def __repr__(self) -> str:
        q = f" queue={self.queue!r}" if self.queue else ""
        return f"<Subscription sid={self.sid} subject={self.subject!r}{q}>"

    def __aiter__(self) -> AsyncIterator[Msg]:
        return self.messages


class _Resume:
    """Awaitable that carries on a coroutine which already ran (and suspended) elsewhere.

    ``first`` is what the coroutine yielded when it suspended (the future it waits on); the
    task awaiting this object waits on that future, then keeps driving the coroutine.
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value
