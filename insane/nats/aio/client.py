"""nats-py's ``nats.aio.client.Client``, running on an INSANE session: no server anywhere.

``await nc.connect(...)`` opens an :class:`insane.Session` (configured by the YAML file named by
``INSANE_CONFIG``, else ``./insane.yaml``, else the embedded default, or by the facade's own
``insane_config=`` keyword). Everything else is translation: ``publish``, ``request``,
``subscribe``, ``flush``, ``drain`` and ``close`` call the session's methods, and the messages,
subscriptions and errors the application gets are INSANE's own objects, which carry nats-py's
surface. No message is wrapped or copied on the way.

Connect options
    Every keyword nats-py's ``Client.connect`` accepts is accepted, with the same default.

    Used: ``name`` (the peer's name in discovery), ``error_cb`` (asynchronous errors: slow
    consumers, exceptions raised by callbacks), ``closed_cb`` and ``disconnected_cb`` (called
    once each on close or at the end of drain, as nats-py does), ``drain_timeout``.

    No effect, logged at debug level, because there is no server to talk to: ``servers``
    (kept for :attr:`Client.servers`), ``reconnected_cb``, ``discovered_server_cb``,
    ``lame_duck_mode_cb``, ``reconnect_to_server_handler`` (never called: there is no server
    connection to lose or regain), ``allow_reconnect``, ``connect_timeout``,
    ``reconnect_time_wait``, ``max_reconnect_attempts``, ``ping_interval``,
    ``max_outstanding_pings``, ``dont_randomize``, ``flusher_queue_size``, ``pending_size``,
    ``flush_timeout``, ``pedantic``, ``verbose``, ``inbox_prefix``, ``ws_connection_headers``,
    ``skip_subject_validation`` (subjects are always validated); authentication and TLS
    (``user``, ``password``, ``token``, ``user_credentials``, ``nkeys_seed``,
    ``nkeys_seed_str``, ``signature_cb``, ``user_jwt_cb``, ``tls``, ``tls_hostname``,
    ``tls_handshake_first``): they authenticate a client to a server; peers on the bus are
    not authenticated. ``no_echo=True`` is not supported (a connection receives the messages
    it publishes when it subscribes to them) and logs a warning.

Broker features
    ``jetstream()``, ``jsm()`` (and through them key-value and object stores) raise
    :class:`nats.errors.BrokerFeatureError`; on a message, ``ack``, ``nak``, ``term``,
    ``in_progress`` and ``metadata`` raise ``JetStreamMsgError`` (a ``NotJSMessageError``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any
from urllib.parse import ParseResult, urlparse

import insane
from insane import errors
from insane.api.message import Msg
from insane.api.subscription import (
    DEFAULT_PENDING_BYTES_LIMIT as DEFAULT_SUB_PENDING_BYTES_LIMIT,
)
from insane.api.subscription import (
    DEFAULT_PENDING_MSGS_LIMIT as DEFAULT_SUB_PENDING_MSGS_LIMIT,
)
from insane.api.subscription import Subscription

__all__ = [
    "DEFAULT_SUB_PENDING_BYTES_LIMIT",
    "DEFAULT_SUB_PENDING_MSGS_LIMIT",
    "Client",
    "Msg",
    "Subscription",
]

#: The facade's own notes (options without effect), quiet unless the app configures logging.
log = logging.getLogger("insane.nats")
#: Asynchronous errors with no error_cb, logged as nats-py logs them (same logger, same text).
_nats_log = logging.getLogger("nats.aio.client")

DEFAULT_PENDING_SIZE = 2 * 1024 * 1024
DEFAULT_BUFFER_SIZE = 32768
DEFAULT_RECONNECT_TIME_WAIT = 2
DEFAULT_MAX_RECONNECT_ATTEMPTS = 60
DEFAULT_PING_INTERVAL = 120
DEFAULT_MAX_OUTSTANDING_PINGS = 2
DEFAULT_MAX_PAYLOAD_SIZE = 1048576
DEFAULT_MAX_FLUSHER_QUEUE_SIZE = 1024
DEFAULT_FLUSH_TIMEOUT = 10
DEFAULT_CONNECT_TIMEOUT = 2
DEFAULT_DRAIN_TIMEOUT = 30
DEFAULT_INBOX_PREFIX = b"_INBOX"

Callback = Callable[[], Awaitable[None]]
ErrorCallback = Callable[[Exception], Awaitable[None]]

#: Options that change nothing on a broker-less bus, with nats-py's default for each.
_NO_EFFECT: dict[str, Any] = {
    "discovered_server_cb": None,
    "reconnected_cb": None,
    "pedantic": False,
    "verbose": False,
    "allow_reconnect": True,
    "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
    "reconnect_time_wait": DEFAULT_RECONNECT_TIME_WAIT,
    "max_reconnect_attempts": DEFAULT_MAX_RECONNECT_ATTEMPTS,
    "ping_interval": DEFAULT_PING_INTERVAL,
    "max_outstanding_pings": DEFAULT_MAX_OUTSTANDING_PINGS,
    "dont_randomize": False,
    "flusher_queue_size": DEFAULT_MAX_FLUSHER_QUEUE_SIZE,
    "tls": None,
    "tls_hostname": None,
    "tls_handshake_first": False,
    "user": None,
    "password": None,
    "token": None,
    "signature_cb": None,
    "user_jwt_cb": None,
    "user_credentials": None,
    "nkeys_seed": None,
    "nkeys_seed_str": None,
    "inbox_prefix": DEFAULT_INBOX_PREFIX,
    "pending_size": DEFAULT_PENDING_SIZE,
    "flush_timeout": None,
    "ws_connection_headers": None,
    "reconnect_to_server_handler": None,
    "lame_duck_mode_cb": None,
    "skip_subject_validation": False,
}


async def _default_error_callback(ex: Exception) -> None:
    """nats-py's default: log asynchronous errors."""
    _nats_log.error("nats: encountered error", exc_info=ex)


def _is_coroutine_callback(cb: Any) -> bool:
    return inspect.iscoroutinefunction(cb) or (
        hasattr(cb, "func") and inspect.iscoroutinefunction(cb.func)
    )


def _parse_server_uri(url: str) -> ParseResult:
    if "://" not in url:
        url = f"nats://{url}"
    uri = urlparse(url)
    if uri.port is None and uri.hostname:
        uri = uri._replace(netloc=f"{uri.netloc}:4222")
    return uri


def _limit(value: int) -> int:
    """nats-py reads a pending limit of 0 (or less) as "no limit"."""
    return value if value > 0 else sys.maxsize


async def _not_connected(*args: Any, **kw: Any) -> Any:
    raise errors.ConnectionClosedError()


class Client:
    """An asyncio client with nats-py's API, on a broker-less INSANE session."""

    DISCONNECTED = 0
    CONNECTED = 1
    CLOSED = 2
    RECONNECTING = 3
    CONNECTING = 4
    DRAINING_SUBS = 5
    DRAINING_PUBS = 6

    msg_class: type[Msg] = Msg

    def __init__(self) -> None:
        self._session: insane.Session | None = None
        self._status = Client.DISCONNECTED
        self._servers: list[ParseResult] = []
        self._error_cb: ErrorCallback = _default_error_callback
        self._closed_cb: Callback | None = None
        self._disconnected_cb: Callback | None = None
        self._drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
        # Bound to the session's methods on connect: publish() and request() call them with no
        # frame of their own.
        self._publish: Callable[..., Coroutine[Any, Any, None]] = _not_connected
        self._request: Callable[..., Coroutine[Any, Any, Msg]] = _not_connected
        self.options: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<nats client (insane {insane.__version__})>"

    # ================================================================== connecting

    async def connect(
        self,
        servers: str | list[str] = "nats://localhost:4222",
        error_cb: ErrorCallback | None = None,
        disconnected_cb: Callback | None = None,
        closed_cb: Callback | None = None,
        discovered_server_cb: Callback | None = None,
        reconnected_cb: Callback | None = None,
        name: str | None = None,
        pedantic: bool = False,
        verbose: bool = False,
        allow_reconnect: bool = True,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
        reconnect_time_wait: int = DEFAULT_RECONNECT_TIME_WAIT,
        max_reconnect_attempts: int = DEFAULT_MAX_RECONNECT_ATTEMPTS,
        ping_interval: int = DEFAULT_PING_INTERVAL,
        max_outstanding_pings: int = DEFAULT_MAX_OUTSTANDING_PINGS,
        dont_randomize: bool = False,
        flusher_queue_size: int = DEFAULT_MAX_FLUSHER_QUEUE_SIZE,
        no_echo: bool = False,
        tls: Any = None,
        tls_hostname: str | None = None,
        tls_handshake_first: bool = False,
        user: Any = None,
        password: Any = None,
        token: Any = None,
        drain_timeout: int = DEFAULT_DRAIN_TIMEOUT,
        signature_cb: Any = None,
        user_jwt_cb: Any = None,
        user_credentials: Any = None,
        nkeys_seed: str | None = None,
        nkeys_seed_str: str | None = None,
        inbox_prefix: str | bytes = DEFAULT_INBOX_PREFIX,
        pending_size: int = DEFAULT_PENDING_SIZE,
        flush_timeout: float | None = None,
        ws_connection_headers: dict[str, list[str]] | None = None,
        reconnect_to_server_handler: Any = None,
        lame_duck_mode_cb: Callback | None = None,
        skip_subject_validation: bool = False,
        *,
        insane_config: Any = None,
    ) -> None:
        """Join the bus. Takes nats-py's keywords (see the module docstring for which ones
        matter); ``insane_config`` (a YAML path, a mapping or an ``insane.Config``) overrides
        the ``INSANE_CONFIG`` / ``./insane.yaml`` lookup."""
        for cb in (
            error_cb,
            disconnected_cb,
            closed_cb,
            reconnected_cb,
            discovered_server_cb,
            lame_duck_mode_cb,
        ):
            if cb and not _is_coroutine_callback(cb):
                raise errors.InvalidCallbackTypeError()
        given = locals()
        for option, default in _NO_EFFECT.items():
            value = given[option]
            if value is not default and value != default:
                log.debug("compat.nats: connect(%s=...) has no effect on a broker-less bus", option)
        if no_echo:
            log.warning(
                "compat.nats: connect(no_echo=True) is not supported; this connection receives "
                "the messages it publishes on subjects it subscribes to"
            )
        self._servers = [
            _parse_server_uri(s) for s in ([servers] if isinstance(servers, str) else servers)
        ]
        self.options = {
            "name": name,
            "no_echo": no_echo,
            "drain_timeout": drain_timeout,
            **{k: given[k] for k in _NO_EFFECT},
        }
        self._error_cb = error_cb or _default_error_callback
        self._closed_cb = closed_cb
        self._disconnected_cb = disconnected_cb
        self._drain_timeout = drain_timeout
        self._status = Client.CONNECTING
        try:
            session = await insane.connect(insane_config, name=name)
        except BaseException:
            self._status = Client.DISCONNECTED
            raise
        session.error_cb = self._error_cb
        self._session = session
        self._publish = session.publish
        self._request = session.request
        # publish() is the session's own from now on: no frame of ours per message (the
        # native engine's takes the common case without any Python frame at all).
        self.publish = session.publish  # type: ignore[method-assign]
        self._status = Client.CONNECTED

    # ================================================================== the hot path

    def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> Coroutine[Any, Any, None]:
        """Publish ``payload`` on ``subject`` (a coroutine, as in nats-py: await it)."""
        return self._publish(subject, payload, reply, headers)

    def request(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float = 0.5,
        old_style: bool = False,
        headers: dict[str, Any] | None = None,
    ) -> Coroutine[Any, Any, Msg]:
        """Send a request and await the first reply. Raises ``NoRespondersError`` when nobody
        subscribes to ``subject``, ``TimeoutError`` when no reply comes in ``timeout`` seconds.
        ``old_style`` makes no difference here."""
        return self._request(subject, payload, timeout, headers)

    # ================================================================== subscribing

    async def subscribe(
        self,
        subject: str,
        queue: str = "",
        cb: Callable[[Msg], Awaitable[None]] | None = None,
        future: asyncio.Future[Msg] | None = None,
        max_msgs: int = 0,
        pending_msgs_limit: int = DEFAULT_SUB_PENDING_MSGS_LIMIT,
        pending_bytes_limit: int = DEFAULT_SUB_PENDING_BYTES_LIMIT,
    ) -> Subscription:
        """Subscribe to a subject or pattern; returns once known peers have learnt of it."""
        s = self._session
        if s is None or self.is_closed:
            raise errors.ConnectionClosedError()
        if self.is_draining or s.is_draining:
            raise errors.ConnectionDrainingError()
        handler: Any = cb
        if cb is not None:
            if not _is_coroutine_callback(cb):
                raise errors.Error("nats: must use coroutine for subscriptions")
        elif future is not None:

            def handler(msg: Msg) -> None:
                if not future.done():
                    future.set_result(msg)

        sub = await s.subscribe(
            subject,
            queue or None,
            handler,
            pending_msgs_limit=_limit(pending_msgs_limit),
            pending_bytes_limit=_limit(pending_bytes_limit),
        )
        if max_msgs > 0:
            await sub.unsubscribe(limit=max_msgs)
        return sub

    def new_inbox(self) -> str:
        """A unique subject to receive replies on (``_INBOX.<peer id>.<n>``)."""
        if self._session is None:
            raise errors.ConnectionClosedError()
        return self._session.new_inbox()

    # ================================================================== flushing and closing

    async def flush(self, timeout: float = DEFAULT_FLUSH_TIMEOUT) -> None:
        """Send what is queued and make sure every peer knows this connection's interest."""
        if timeout <= 0:
            raise errors.BadTimeoutError()
        if self._session is None or self.is_closed:
            raise errors.ConnectionClosedError()
        try:
            await self._session.flush(timeout)
        except errors.FlushTimeoutError:
            raise
        except errors.TimeoutError as exc:
            raise errors.FlushTimeoutError(str(exc)) from None

    async def rtt(self, timeout: float = DEFAULT_FLUSH_TIMEOUT) -> float:
        """Seconds a :meth:`flush` takes (there is no server to ping)."""
        if timeout <= 0:
            raise errors.BadTimeoutError()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self.flush(timeout)
        return loop.time() - start

    async def drain(self) -> None:
        """Stop every subscription, let what is pending be processed, flush, then close (and
        call ``disconnected_cb`` and ``closed_cb``). Past ``drain_timeout`` seconds the
        ``error_cb`` gets ``DrainTimeoutError`` and the connection closes anyway."""
        if self.is_draining:
            return
        s = self._session
        if s is None or self.is_closed:
            raise errors.ConnectionClosedError()
        self._status = Client.DRAINING_SUBS
        task = asyncio.ensure_future(s.drain())
        try:
            done, _ = await asyncio.wait({task}, timeout=self._drain_timeout)
            if not done:
                task.cancel()
                await self._error_cb(errors.DrainTimeoutError())
            elif task.exception() is not None:
                await self._error_cb(task.exception())  # type: ignore[arg-type]
        finally:
            await self._finish_close()

    async def close(self) -> None:
        """Leave the bus; ``disconnected_cb`` and ``closed_cb`` are called once, as in nats-py."""
        await self._finish_close()

    async def _finish_close(self) -> None:
        if self._status == Client.CLOSED:
            return
        self._status = Client.CLOSED
        self._publish = self._request = _not_connected
        vars(self).pop("publish", None)  # (the class's again: it says not connected)
        if self._session is not None:
            await self._session.close()
        if self._disconnected_cb is not None:
            await self._disconnected_cb()
        if self._closed_cb is not None:
            await self._closed_cb()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def force_reconnect(self) -> None:
        """Nothing to reconnect to: does nothing."""

    # ================================================================== state

    @property
    def is_closed(self) -> bool:
        return self._status == Client.CLOSED

    @property
    def is_connected(self) -> bool:
        return self._status == Client.CONNECTED or self.is_draining

    @property
    def is_connecting(self) -> bool:
        return self._status == Client.CONNECTING

    @property
    def is_reconnecting(self) -> bool:
        return False

    @property
    def is_draining(self) -> bool:
        return self._status in (Client.DRAINING_SUBS, Client.DRAINING_PUBS)

    @property
    def is_draining_pubs(self) -> bool:
        return self._status == Client.DRAINING_PUBS

    @property
    def max_payload(self) -> int:
        """The largest payload a publish accepts (INSANE's limit, 64 MiB by default)."""
        return self._session.max_payload if self._session else DEFAULT_MAX_PAYLOAD_SIZE

    @property
    def client_id(self) -> int | None:
        """This peer's 64-bit id on the bus."""
        return self._session.peer_id if self._session and not self.is_closed else None

    @property
    def client_ip(self) -> str | None:
        return self._session.address[0] if self._session and not self.is_closed else None

    @property
    def connected_url(self) -> ParseResult | None:
        """``insane://ADDRESS:PORT`` of this peer's kernel UDP socket while connected."""
        if self._session is None or not self.is_connected:
            return None
        host, port = self._session.address
        return urlparse(f"insane://{host}:{port}")

    @property
    def servers(self) -> list[ParseResult]:
        """The ``servers`` given to connect (not used: there is no server)."""
        return list(self._servers)

    @property
    def discovered_servers(self) -> list[ParseResult]:
        return []

    @property
    def last_error(self) -> Exception | None:
        return None

    @property
    def pending_data_size(self) -> int:
        return 0

    @property
    def stats(self) -> dict[str, int]:
        """nats-py's counters, read from INSANE's metrics: process-wide, network traffic only
        (messages delivered inside a session are not counted), one message per destination."""
        from insane.ops.metrics import STORE

        return {
            "in_msgs": int(STORE.total("insane_messages_received")),
            "out_msgs": int(STORE.total("insane_messages_sent")),
            "in_bytes": int(STORE.total("insane_bytes_received")),
            "out_bytes": int(STORE.total("insane_bytes_sent")),
            "reconnects": 0,
            "errors_received": 0,
        }

    @property
    def session(self) -> insane.Session | None:
        """The INSANE session under this client (for QoS explanations, peers, metrics)."""
        return self._session

    # ================================================================== broker features

    def jetstream(self, **opts: Any) -> Any:
        """JetStream needs a NATS server: raises :class:`nats.errors.BrokerFeatureError`."""
        raise errors.BrokerFeatureError()

    def jsm(self, **opts: Any) -> Any:
        """JetStream management needs a NATS server: raises ``BrokerFeatureError``."""
        raise errors.BrokerFeatureError()
