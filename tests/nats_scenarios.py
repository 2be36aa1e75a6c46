"""NATS scenarios that run unchanged on nats-py (+ nats-server) and on ``compat.nats``.

Each scenario has a ``pub`` role and optionally a ``sub`` role: coroutines taking a
:class:`Ctx` (whose ``ctx.nats`` is the module under test, ``nats`` or ``compat.nats``) and
returning a JSON-able observation. The ``sub`` role runs first, in one process, until it calls
``ctx.ready()``; the ``pub`` role then runs in another process; when it has returned, the
``sub`` role is released (``await ctx.released()``) and finishes. ``expected`` is what both
implementations must observe. Subjects are relative to a per-run prefix (``ctx.s("x")``).

A scenario whose ``facade_xfail`` is set shows a difference that needs a change inside
INSANE (the reason says which); the test expects the facade to fail it until that lands.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

#: nats-py's error classes, most derived first where one derives from another.
ERROR_NAMES = (
    "UnexpectedEOF",
    "FlushTimeoutError",
    "DrainTimeoutError",
    "TimeoutError",
    "NoRespondersError",
    "StaleConnectionError",
    "OutboundBufferLimitError",
    "ConnectionClosedError",
    "SecureConnRequiredError",
    "SecureConnWantedError",
    "SecureConnFailedError",
    "BadSubscriptionError",
    "BadSubjectError",
    "BadHeaderError",
    "SlowConsumerError",
    "BadTimeoutError",
    "AuthorizationError",
    "NoServersError",
    "JsonParseError",
    "MaxPayloadError",
    "ConnectionDrainingError",
    "ConnectionReconnectingError",
    "InvalidUserCredentialsError",
    "InvalidCallbackTypeError",
    "ProtocolError",
    "ServerNotInPoolError",
    "NotJSMessageError",
    "MsgAlreadyAckdError",
    "Error",
)


class Ctx:
    """What a role gets: the module under test, the servers URL, subjects, synchronisation."""

    def __init__(
        self,
        nats: ModuleType,
        impl: str,
        servers: str,
        prefix: str,
        peer: Any,
        on_ready: Callable[[Any], None],
    ) -> None:
        self.nats = nats
        self.impl = impl
        self.servers = servers
        self.prefix = prefix
        self.peer = peer  # what the sub role passed to ready()
        self._on_ready = on_ready
        self._released = asyncio.Event()
        self._conns: list[Any] = []

    def s(self, name: str) -> str:
        """The subject ``name`` inside this run's prefix."""
        return f"{self.prefix}.{name}"

    def rel(self, subject: str) -> str:
        """``subject`` without this run's prefix."""
        return subject[len(self.prefix) + 1 :] if subject.startswith(self.prefix + ".") else subject

    async def connect(self, **kw: Any) -> Any:
        nc = await self.nats.connect(servers=self.servers, **kw)
        self._conns.append(nc)
        return nc

    async def sync(self, nc: Any) -> None:
        """``flush()``, twice. nats-py 2.16's flush() writes its PING straight to the socket
        while earlier commands (a SUB, PUBs) may still wait in its pending buffer for the
        flusher task, so one PONG does not always prove the server has seen them: under load
        about one run in a hundred lost every message. The second PING leaves after them."""
        await nc.flush()
        await nc.flush()

    def ready(self, data: Any = None) -> None:
        self._on_ready(data)

    def release(self) -> None:
        self._released.set()

    async def released(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._released.wait(), timeout)

    def error_name(self, exc: BaseException) -> str:
        """The most derived nats.errors class ``exc`` is an instance of (how an application's
        ``except nats.errors.X`` clauses see it), else ``other:<type name>``."""
        for name in ERROR_NAMES:
            cls = getattr(self.nats.errors, name, None)
            if cls is not None and isinstance(exc, cls):
                return name
        return f"other:{type(exc).__name__}"

    async def outcome(self, aw: Awaitable[Any]) -> str:
        """``"ok"`` or the error name of what awaiting ``aw`` raised."""
        try:
            await aw
        except Exception as exc:
            return self.error_name(exc)
        return "ok"

    def outcome_sync(self, fn: Callable[[], Any]) -> str:
        try:
            fn()
        except Exception as exc:
            return self.error_name(exc)
        return "ok"

    async def close_all(self) -> None:
        for nc in self._conns:
            if not nc.is_closed:
                try:
                    await nc.close()
                except Exception:
                    pass
        self._conns.clear()


RoleFn = Callable[[Ctx], Awaitable[Any]]


@dataclass
class Scenario:
    name: str
    pub: RoleFn
    expected: dict[str, Any]
    sub: RoleFn | None = None
    #: also run it between two hosts (network namespaces)
    netns: bool = False
    #: "needs insane change: ..." while the facade cannot pass it
    facade_xfail: str | None = None


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str,
    expected: dict[str, Any],
    *,
    sub: RoleFn | None = None,
    netns: bool = False,
    facade_xfail: str | None = None,
) -> Callable[[RoleFn], RoleFn]:
    """Register ``pub`` (the decorated coroutine) with its ``sub`` role and expectations."""

    def register(pub: RoleFn) -> RoleFn:
        SCENARIOS[name] = Scenario(name, pub, expected, sub, netns, facade_xfail)
        return pub

    return register


# ---------------------------------------------------------------------------- helpers


async def collect(sub: Any, n: int, timeout: float = 5.0) -> list[Any]:
    """Up to ``n`` messages from ``sub.next_msg``, stopping early when ``timeout`` runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    out: list[Any] = []
    while len(out) < n:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            out.append(await sub.next_msg(timeout=remaining))
        except TimeoutError:
            break
    return out


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def ints(msgs: list[Any]) -> list[int]:
    return [int(m.data) for m in msgs]


def blob(i: int, size: int) -> bytes:
    return bytes((i * 7 + k) % 251 for k in range(size))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# ---------------------------------------------------------------------------- delivery

ORDER_N = 200
SIZES = [0, 1, 100, 1400, 3000, 65536, 200_000, 1_000_000]


async def order_sub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    seq = await nc.subscribe(ctx.s("seq"))
    sized = await nc.subscribe(ctx.s("sized"))
    await ctx.sync(nc)
    ctx.ready()
    got = await collect(seq, ORDER_N)
    big = await collect(sized, len(SIZES))
    await ctx.released()
    return {
        "seq": ints(got),
        "sizes": [[len(m.data), digest(m.data)] for m in big],
        "then": await ctx.outcome(seq.next_msg(timeout=0.05)),
    }


@scenario(
    "order",
    {
        "sub": {
            "seq": list(range(ORDER_N)),
            "sizes": [[n, digest(blob(i, n))] for i, n in enumerate(SIZES)],
            "then": "TimeoutError",
        },
        "pub": None,
    },
    sub=order_sub,
    netns=True,
)
async def order_pub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    for i in range(ORDER_N):
        await nc.publish(ctx.s("seq"), str(i).encode())
    for i, n in enumerate(SIZES):
        await nc.publish(ctx.s("sized"), blob(i, n))
    await ctx.sync(nc)
    return None


WILD_SUBJECTS = ["eu.new", "us.new", "eu.cancel", "eu.new.x", "x"]
WILD_PATTERNS = {"star": "*.new", "tail": ">", "lit": "eu.new", "one": "*", "eu": "eu.>"}
WILD_ROUNDS = 20


#: pattern key -> (subjects of WILD_SUBJECTS it matches), written out by hand
WILD_MATCHES = {
    "star": ["eu.new", "us.new"],
    "tail": ["eu.cancel", "eu.new", "eu.new.x", "us.new", "x"],
    "lit": ["eu.new"],
    "one": ["x"],
    "eu": ["eu.cancel", "eu.new", "eu.new.x"],
}
WILD_EXPECTED = {
    k: {"count": len(v) * WILD_ROUNDS, "subjects": v, "extra": 0, "ordered": True}
    for k, v in WILD_MATCHES.items()
}


async def wildcards_sub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    subs = {k: await nc.subscribe(ctx.s(p)) for k, p in WILD_PATTERNS.items()}
    await ctx.sync(nc)
    ctx.ready()
    await ctx.released()
    out: dict[str, Any] = {}
    for key, sub in subs.items():
        msgs = await collect(sub, WILD_EXPECTED[key]["count"], timeout=3.0)
        seq = ints(msgs)
        out[key] = {
            "count": len(msgs),
            "subjects": sorted({ctx.rel(m.subject) for m in msgs}),
            "extra": len(await collect(sub, 1, timeout=0.02)),
            "ordered": seq == sorted(seq),
        }
    return out


@scenario("wildcards", {"sub": WILD_EXPECTED, "pub": None}, sub=wildcards_sub, netns=True)
async def wildcards_pub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    outside = f"{ctx.prefix}z.eu.new"  # shares no token with the prefix: matches nothing
    subjects = [ctx.s(s) for s in WILD_SUBJECTS] + [outside]
    for i in range(WILD_ROUNDS * len(subjects)):
        await nc.publish(subjects[i % len(subjects)], str(i).encode())
    await ctx.sync(nc)
    return None


HEADERS = [
    {"trace": "t-1", "X-Num": "42"},
    None,
    {},
    {"a": "1", "b": "two words", "c": "3"},
]


async def headers_sub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    sub = await nc.subscribe(ctx.s("h"))
    await ctx.sync(nc)
    ctx.ready()
    msgs = await collect(sub, len(HEADERS))
    await ctx.released()
    return [
        {
            "data": m.data.decode(),
            "headers": m.headers,
            "header_is_headers": m.header == m.headers,
        }
        for m in msgs
    ]


@scenario(
    "headers",
    {
        "sub": [
            {"data": "0", "headers": HEADERS[0], "header_is_headers": True},
            {"data": "1", "headers": None, "header_is_headers": True},
            {"data": "2", "headers": None, "header_is_headers": True},  # {} arrives as None
            {"data": "3", "headers": HEADERS[3], "header_is_headers": True},
        ],
        "pub": None,
    },
    sub=headers_sub,
    netns=True,
)
async def headers_pub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    for i, h in enumerate(HEADERS):
        await nc.publish(ctx.s("h"), str(i).encode(), headers=h)
    await ctx.sync(nc)
    return None


QUEUE_N = 300


async def queue_sub(ctx: Ctx) -> Any:
    nc1 = await ctx.connect()
    nc2 = await ctx.connect()
    members = [
        await nc1.subscribe(ctx.s("jobs.*"), queue="workers"),
        await nc1.subscribe(ctx.s("jobs.*"), queue="workers"),
        await nc2.subscribe(ctx.s("jobs.*"), queue="workers"),
    ]
    plain = await nc2.subscribe(ctx.s("jobs.*"))
    await ctx.sync(nc1)
    await ctx.sync(nc2)
    ctx.ready()
    await ctx.released()
    all_msgs = await collect(plain, QUEUE_N)
    await wait_until(lambda: sum(m.pending_msgs for m in members) >= QUEUE_N, 3.0)
    await asyncio.sleep(0.1)  # duplicates, if any, would arrive now
    got: list[list[int]] = [[] for _ in members]
    for i, m in enumerate(members):
        while m.pending_msgs:
            got[i].append(int((await m.next_msg(timeout=1)).data))
    union = [x for g in got for x in g]
    return {
        "plain": ints(all_msgs) == list(range(QUEUE_N)),
        "queued": len(union),
        "unique": len(set(union)),
        "all_covered": sorted(union) == list(range(QUEUE_N)),
        "every_member_served": all(g for g in got),
        "each_member_in_order": all(g == sorted(g) for g in got),
        "queue_names": [m.queue for m in members] + [plain.queue],
        "subjects": [ctx.rel(m.subject) for m in members],
    }


@scenario(
    "queue_group",
    {
        "sub": {
            "plain": True,
            "queued": QUEUE_N,
            "unique": QUEUE_N,
            "all_covered": True,
            "every_member_served": True,
            "each_member_in_order": True,
            "queue_names": ["workers", "workers", "workers", ""],
            "subjects": ["jobs.*", "jobs.*", "jobs.*"],
        },
        "pub": None,
    },
    sub=queue_sub,
    netns=True,
)
async def queue_pub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    for i in range(QUEUE_N):
        await nc.publish(ctx.s(f"jobs.{i % 7}"), str(i).encode())
    await ctx.sync(nc)
    return None


# ---------------------------------------------------------------------------- request / reply


async def request_sub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    nq = await ctx.connect()

    async def echo(msg: Any) -> None:
        await msg.respond(b"re:" + msg.data)

    async def same(msg: Any) -> None:
        await msg.respond(msg.data)  # nats-py's respond() sends the request's headers back

    async def q(msg: Any) -> None:
        await msg.respond(b"q")

    await nc.subscribe(ctx.s("svc.echo"), cb=echo)
    await nc.subscribe(ctx.s("svc.same"), cb=same)
    await nc.subscribe(ctx.s("svc.q"), queue="g", cb=q)
    await nq.subscribe(ctx.s("svc.q"), queue="g", cb=q)
    await nc.subscribe(ctx.s("svc.silent"))
    gone = await nc.subscribe(ctx.s("svc.gone"))
    await gone.unsubscribe()
    await ctx.sync(nc)
    await ctx.sync(nq)
    ctx.ready()
    await ctx.released()
    return None


@scenario(
    "request_reply",
    {
        "sub": None,
        "pub": {
            "sequential": True,
            "concurrent": True,
            "same": ["ping", {"k": "v"}],
            "queue": ["q"] * 5,
            "old_style": "re:old",
            "inbox": ["re:manual", True],
            "no_responders": "NoRespondersError",
            "gone": "NoRespondersError",
            "silent": ["TimeoutError", True],
        },
    },
    sub=request_sub,
    netns=True,
)
async def request_pub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    seq = [(await nc.request(ctx.s("svc.echo"), b"%d" % i, timeout=2)).data for i in range(20)]
    conc = await asyncio.gather(
        *(nc.request(ctx.s("svc.echo"), b"c%d" % i, timeout=2) for i in range(20))
    )
    same = await nc.request(ctx.s("svc.same"), b"ping", timeout=2, headers={"k": "v"})
    queue = [(await nc.request(ctx.s("svc.q"), b"", timeout=2)).data.decode() for _ in range(5)]
    old = await nc.request(ctx.s("svc.echo"), b"old", timeout=2, old_style=True)
    inbox = nc.new_inbox()
    isub = await nc.subscribe(inbox)
    await nc.publish(ctx.s("svc.echo"), b"manual", reply=inbox)
    manual = await isub.next_msg(timeout=2)
    silent_err: BaseException | None = None
    try:
        await nc.request(ctx.s("svc.silent"), b"", timeout=0.2)
    except Exception as exc:
        silent_err = exc
    return {
        "sequential": seq == [b"re:%d" % i for i in range(20)],
        "concurrent": [m.data for m in conc] == [b"re:c%d" % i for i in range(20)],
        "same": [same.data.decode(), same.headers],
        "queue": queue,
        "old_style": old.data.decode(),
        "inbox": [manual.data.decode(), manual.subject == inbox],
        "no_responders": await ctx.outcome(nc.request(ctx.s("svc.none"), b"", timeout=1)),
        "gone": await ctx.outcome(nc.request(ctx.s("svc.gone"), b"", timeout=1)),
        "silent": [
            ctx.error_name(silent_err) if silent_err else "ok",
            isinstance(silent_err, asyncio.TimeoutError),
        ],
    }


# ---------------------------------------------------------------------------- subscriptions


@scenario("next_msg_timeout", {"sub": None, "pub": ["TimeoutError", True, True]})
async def next_msg_timeout(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    sub = await nc.subscribe(ctx.s("quiet"))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        await sub.next_msg(timeout=0.2)
    except Exception as exc:
        waited = loop.time() - t0
        return [ctx.error_name(exc), isinstance(exc, asyncio.TimeoutError), 0.15 < waited < 1.5]
    return ["ok", False, False]


async def limit_sub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    lim = await nc.subscribe(ctx.s("lim"))
    await lim.unsubscribe(limit=3)
    capped = await nc.subscribe(ctx.s("lim"), max_msgs=2)
    every = await nc.subscribe(ctx.s("lim"))
    await ctx.sync(nc)
    ctx.ready()
    await ctx.released()
    all_msgs = await collect(every, 10)
    await asyncio.sleep(0.05)
    out = {
        "every": ints(all_msgs),
        "lim_pending": lim.pending_msgs,
        "capped_pending": capped.pending_msgs,
        "lim": ints([await lim.next_msg(timeout=1) for _ in range(3)]),
        "capped": ints([await capped.next_msg(timeout=1) for _ in range(2)]),
        "delivered": [lim.delivered, capped.delivered, every.delivered],
    }
    return out


@scenario(
    "unsubscribe_limit",
    {
        "sub": {
            "every": list(range(10)),
            "lim_pending": 3,
            "capped_pending": 2,
            "lim": [0, 1, 2],
            "capped": [0, 1],
            "delivered": [3, 2, 10],
        },
        "pub": None,
    },
    sub=limit_sub,
)
async def limit_pub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    for i in range(10):
        await nc.publish(ctx.s("lim"), str(i).encode())
    await ctx.sync(nc)
    return None


@scenario(
    "next_msg_after_limit",
    {"sub": None, "pub": [[0, 1], "TimeoutError"]},
)
async def next_msg_after_limit(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    sub = await nc.subscribe(ctx.s("lim"))
    await sub.unsubscribe(limit=2)
    for i in range(4):
        await nc.publish(ctx.s("lim"), str(i).encode())
    await ctx.sync(nc)
    got = ints(await collect(sub, 2))
    return [got, await ctx.outcome(sub.next_msg(timeout=0.1))]


@scenario(
    "unsubscribe_and_iterate",
    {
        "sub": None,
        "pub": {
            "first": [0],
            "again": "BadSubscriptionError",
            "iterated": [0, 1, 2, 3, 4],
            "iteration_ended": True,
            "cb_messages": "Error",
            "cb_next_msg": "Error",
            "sync_cb": "Error",
        },
    },
)
async def unsubscribe_and_iterate(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    pub = await ctx.connect()
    sub = await nc.subscribe(ctx.s("u"))
    await ctx.sync(nc)
    await pub.publish(ctx.s("u"), b"0")
    await ctx.sync(pub)
    first = ints(await collect(sub, 1))
    await sub.unsubscribe()
    again = await ctx.outcome(sub.unsubscribe())

    it = await nc.subscribe(ctx.s("it"))
    await ctx.sync(nc)
    for i in range(5):
        await pub.publish(ctx.s("it"), str(i).encode())
    await ctx.sync(pub)
    iterated: list[int] = []

    async def consume() -> None:
        async for msg in it.messages:
            iterated.append(int(msg.data))
            if len(iterated) == 5:
                asyncio.get_running_loop().create_task(it.unsubscribe())

    try:
        await asyncio.wait_for(consume(), 3.0)
        ended = True
    except TimeoutError:
        ended = False

    async def cb(msg: Any) -> None:
        pass

    with_cb = await nc.subscribe(ctx.s("cb"), cb=cb)

    def sync_cb(msg: Any) -> None:
        pass

    return {
        "first": first,
        "again": again,
        "iterated": iterated,
        "iteration_ended": ended,
        "cb_messages": ctx.outcome_sync(lambda: with_cb.messages),
        "cb_next_msg": await ctx.outcome(with_cb.next_msg(timeout=0.05)),
        "sync_cb": await ctx.outcome(nc.subscribe(ctx.s("cb"), cb=sync_cb)),
    }


@scenario(
    "pending_counts",
    {"sub": None, "pub": {"before": [10, 1000, 10], "after": [6, 600, 10], "read": [0, 1, 2, 3]}},
)
async def pending_counts(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    pub = await ctx.connect()
    sub = await nc.subscribe(ctx.s("p"))
    await ctx.sync(nc)
    for i in range(10):
        await pub.publish(ctx.s("p"), str(i).encode().ljust(100, b"."))
    await ctx.sync(pub)
    await wait_until(lambda: sub.pending_msgs >= 10, 3.0)
    before = [sub.pending_msgs, sub.pending_bytes, sub.delivered]
    read = [int((await sub.next_msg(timeout=1)).data.rstrip(b".")) for _ in range(4)]
    return {
        "before": before,
        "after": [sub.pending_msgs, sub.pending_bytes, sub.delivered],
        "read": read,
    }


# ---------------------------------------------------------------------------- drain, flush, close


async def drain_sub(ctx: Ctx) -> Any:
    calls = {"closed": 0, "disconnected": 0}

    async def closed_cb() -> None:
        calls["closed"] += 1

    async def disconnected_cb() -> None:
        calls["disconnected"] += 1

    nc = await ctx.connect(closed_cb=closed_cb, disconnected_cb=disconnected_cb)
    other = await ctx.connect()
    gate = asyncio.Event()  # the callbacks hold every message until drain has begun
    processed: list[int] = []
    sub_processed: list[int] = []

    async def held(msg: Any) -> None:
        await gate.wait()
        processed.append(int(msg.data))

    async def held2(msg: Any) -> None:
        await gate.wait()
        sub_processed.append(int(msg.data))

    sub = await nc.subscribe(ctx.s("d"), cb=held)
    sub2 = await other.subscribe(ctx.s("d"), cb=held2)
    await ctx.sync(nc)
    await ctx.sync(other)
    ctx.ready()
    await ctx.released()
    await wait_until(lambda: sub.delivered >= 50 and sub2.delivered >= 50, 5.0)
    draining = asyncio.gather(sub2.drain(), nc.drain())
    await asyncio.sleep(0.05)
    during = [len(processed), len(sub_processed), nc.is_draining, nc.is_closed]
    gate.set()
    await draining
    return {
        "during_drain": during,
        "processed": processed,
        "sub_drained": sub_processed == list(range(50)),
        "other_still_connected": other.is_connected,
        "closed": [nc.is_closed, nc.is_connected, nc.is_draining],
        "callbacks": calls,
        "publish_after": await ctx.outcome(nc.publish(ctx.s("d"), b"")),
        "drain_again": await ctx.outcome(nc.drain()),
    }


@scenario(
    "drain",
    {
        "sub": {
            "during_drain": [0, 0, True, False],
            "processed": list(range(50)),
            "sub_drained": True,
            "other_still_connected": True,
            "closed": [True, False, False],
            "callbacks": {"closed": 1, "disconnected": 1},
            "publish_after": "ConnectionClosedError",
            "drain_again": "ConnectionClosedError",
        },
        "pub": None,
    },
    sub=drain_sub,
)
async def drain_pub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    for i in range(50):
        await nc.publish(ctx.s("d"), str(i).encode())
    await ctx.sync(nc)
    return None


@scenario(
    "flush_and_close",
    {
        "sub": None,
        "pub": {
            "flush": "ok",
            "flush_zero": "BadTimeoutError",
            "state_open": [True, False, False, False, False],
            "after_close": {
                "publish": "ConnectionClosedError",
                "subscribe": "ConnectionClosedError",
                "request": "ConnectionClosedError",
                "flush": "ConnectionClosedError",
                "drain": "ConnectionClosedError",
                "close": "ok",
            },
            "state_closed": [False, True, False, False, False],
            "callbacks": {"closed": 1, "disconnected": 1},
            "context_manager_closes": True,
        },
    },
)
async def flush_and_close(ctx: Ctx) -> Any:
    calls = {"closed": 0, "disconnected": 0}

    async def closed_cb() -> None:
        calls["closed"] += 1

    async def disconnected_cb() -> None:
        calls["disconnected"] += 1

    nc = await ctx.connect(closed_cb=closed_cb, disconnected_cb=disconnected_cb)

    def state() -> list[bool]:
        return [
            nc.is_connected,
            nc.is_closed,
            nc.is_draining,
            nc.is_reconnecting,
            nc.is_connecting,
        ]

    out: dict[str, Any] = {
        "flush": await ctx.outcome(nc.flush()),
        "flush_zero": await ctx.outcome(nc.flush(timeout=0)),
        "state_open": state(),
    }
    await nc.close()
    out["after_close"] = {
        "publish": await ctx.outcome(nc.publish(ctx.s("x"), b"")),
        "subscribe": await ctx.outcome(nc.subscribe(ctx.s("x"))),
        "request": await ctx.outcome(nc.request(ctx.s("x"), b"")),
        "flush": await ctx.outcome(nc.flush()),
        "drain": await ctx.outcome(nc.drain()),
        "close": await ctx.outcome(nc.close()),
    }
    out["state_closed"] = state()
    out["callbacks"] = calls
    async with await ctx.nats.connect(servers=ctx.servers) as cm:
        await cm.publish(ctx.s("x"), b"")
    out["context_manager_closes"] = cm.is_closed
    return out


@scenario(
    "closed_subscription",
    {
        "sub": None,
        "pub": {
            "next_msg": "ConnectionClosedError",
            "unsubscribe": "ConnectionClosedError",
            "drain": "ConnectionClosedError",
        },
    },
)
async def closed_subscription(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    a = await nc.subscribe(ctx.s("c"))
    b = await nc.subscribe(ctx.s("c"))
    c = await nc.subscribe(ctx.s("c"))
    await nc.close()
    return {
        "next_msg": await ctx.outcome(a.next_msg(timeout=0.1)),
        "unsubscribe": await ctx.outcome(b.unsubscribe()),
        "drain": await ctx.outcome(c.drain()),
    }


# ---------------------------------------------------------------------------- errors


@scenario(
    "bad_subjects",
    {
        "sub": None,
        "pub": {
            "publish ''": "BadSubjectError",
            "publish 'a b'": "BadSubjectError",
            "publish CRLF": "BadSubjectError",
            "publish bad reply": "BadSubjectError",
            "request ''": "BadSubjectError",
            "subscribe ''": "BadSubjectError",
            "subscribe 'a..b'": "BadSubjectError",
            "subscribe 'a.>.b'": "BadSubjectError",
            "subscribe '>.a'": "BadSubjectError",
            "subscribe 'a b'": "BadSubjectError",
            "subscribe queue 'a b'": "BadSubjectError",
            "still usable": "ok",
        },
    },
)
async def bad_subjects(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    return {
        "publish ''": await ctx.outcome(nc.publish("", b"")),
        "publish 'a b'": await ctx.outcome(nc.publish("a b", b"")),
        "publish CRLF": await ctx.outcome(nc.publish("a\r\nPUB x 1", b"")),
        "publish bad reply": await ctx.outcome(nc.publish(ctx.s("x"), b"", reply="a b")),
        "request ''": await ctx.outcome(nc.request("", b"")),
        "subscribe ''": await ctx.outcome(nc.subscribe("")),
        "subscribe 'a..b'": await ctx.outcome(nc.subscribe("a..b")),
        "subscribe 'a.>.b'": await ctx.outcome(nc.subscribe("a.>.b")),
        "subscribe '>.a'": await ctx.outcome(nc.subscribe(">.a")),
        "subscribe 'a b'": await ctx.outcome(nc.subscribe("a b")),
        "subscribe queue 'a b'": await ctx.outcome(nc.subscribe(ctx.s("x"), queue="a b")),
        "still usable": await ctx.outcome(nc.flush()),
    }


@scenario(
    "wildcard_inside_token",
    {"sub": None, "pub": ["BadSubjectError", "BadSubjectError"]},
)
async def wildcard_inside_token(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    return [
        await ctx.outcome(nc.subscribe(ctx.s("b*"))),
        await ctx.outcome(nc.subscribe(ctx.s(">b"))),
    ]


@scenario("max_payload", {"sub": None, "pub": [True, "MaxPayloadError", "ok"]})
async def max_payload(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    limit = nc.max_payload
    return [
        limit >= 1024 * 1024,
        await ctx.outcome(nc.publish(ctx.s("nobody"), b"x" * (limit + 1))),
        await ctx.outcome(nc.publish(ctx.s("nobody"), b"x" * limit)),
    ]


@scenario(
    "header_rules",
    {"sub": None, "pub": ["BadHeaderError", {"k": "v w", "CRLF": "a  b"}]},
)
async def header_rules(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    sub = await nc.subscribe(ctx.s("h"))
    bad = await ctx.outcome(nc.publish(ctx.s("h"), b"", headers={"bad key": "x"}))
    await nc.publish(ctx.s("h"), b"1", headers={"k": "  v w  ", "CRLF": "a\r\nb"})
    await ctx.sync(nc)
    got = await collect(sub, 2, timeout=0.3)
    return [bad, got[-1].headers if got else None]


@scenario(
    "callbacks_must_be_coroutines",
    {"sub": None, "pub": ["InvalidCallbackTypeError", "InvalidCallbackTypeError", "Error"]},
)
async def callbacks_must_be_coroutines(ctx: Ctx) -> Any:
    def sync(*args: Any) -> None:
        pass

    nc = await ctx.connect()
    return [
        await ctx.outcome(ctx.nats.connect(servers=ctx.servers, error_cb=sync)),
        await ctx.outcome(ctx.nats.connect(servers=ctx.servers, closed_cb=sync)),
        await ctx.outcome(nc.subscribe(ctx.s("x"), cb=sync)),
    ]


@scenario("callback_errors", {"sub": None, "pub": [["other:ValueError", "boom"]] * 2})
async def callback_errors(ctx: Ctx) -> Any:
    seen: list[list[str]] = []

    async def error_cb(exc: Exception) -> None:
        seen.append([ctx.error_name(exc), str(exc)])

    nc = await ctx.connect(error_cb=error_cb)

    async def boom(msg: Any) -> None:
        raise ValueError("boom")

    await nc.subscribe(ctx.s("e"), cb=boom)
    await nc.publish(ctx.s("e"), b"1")
    await nc.publish(ctx.s("e"), b"2")
    await ctx.sync(nc)
    await wait_until(lambda: len(seen) >= 2, 3.0)
    await asyncio.sleep(0.05)
    return seen


async def slow_sub(ctx: Ctx) -> Any:
    errors: list[Any] = []

    async def error_cb(exc: Exception) -> None:
        errors.append(exc)

    nc = await ctx.connect(error_cb=error_cb)
    sub = await nc.subscribe(ctx.s("slow"), pending_msgs_limit=5)
    await ctx.sync(nc)
    ctx.ready()
    await ctx.released()
    await wait_until(lambda: len(errors) >= 15, 5.0)
    await asyncio.sleep(0.05)
    got = ints(await collect(sub, 20, timeout=0.3))
    return {
        "errors": sorted({ctx.error_name(e) for e in errors}),
        "count": len(errors),
        "subject": sorted({ctx.rel(e.subject) for e in errors}),
        "received": got,
    }


@scenario(
    "slow_consumer",
    {
        "sub": {
            "errors": ["SlowConsumerError"],
            "count": 15,
            "subject": ["slow"],
            "received": [0, 1, 2, 3, 4],
        },
        "pub": None,
    },
    sub=slow_sub,
)
async def slow_pub(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    for i in range(20):
        await nc.publish(ctx.s("slow"), str(i).encode())
    await ctx.sync(nc)
    return None


@scenario(
    "slow_consumer_details",
    {
        "sub": None,
        "pub": {"subject": ["slow.x"], "reply": ["r"], "sub_is_sub": True, "delivered": 5},
    },
)
async def slow_consumer_details(ctx: Ctx) -> Any:
    errors: list[Any] = []

    async def error_cb(exc: Exception) -> None:
        errors.append(exc)

    nc = await ctx.connect(error_cb=error_cb)
    pub = await ctx.connect()
    sub = await nc.subscribe(ctx.s("slow.*"), pending_msgs_limit=2)
    await ctx.sync(nc)
    for i in range(5):
        await pub.publish(ctx.s("slow.x"), str(i).encode(), reply=ctx.s("r"))
    await ctx.sync(pub)
    await wait_until(lambda: len(errors) >= 3, 3.0)
    return {
        "subject": sorted({ctx.rel(e.subject) for e in errors}),
        "reply": sorted({ctx.rel(e.reply) for e in errors}),
        "sub_is_sub": bool(errors) and all(e.sub is sub for e in errors),
        "delivered": sub.delivered,
    }


@scenario(
    "pending_bytes_limit",
    {"sub": None, "pub": [9, 3]},
)
async def pending_bytes_limit(ctx: Ctx) -> Any:
    errors: list[Any] = []

    async def error_cb(exc: Exception) -> None:
        errors.append(exc)

    nc = await ctx.connect(error_cb=error_cb)
    pub = await ctx.connect()
    sub = await nc.subscribe(ctx.s("b"), pending_bytes_limit=100)
    await ctx.sync(nc)
    for i in range(12):
        await pub.publish(ctx.s("b"), b"%010d" % i)
    await ctx.sync(pub)
    await wait_until(lambda: sub.pending_msgs + len(errors) >= 12, 3.0)
    await asyncio.sleep(0.05)
    return [sub.pending_msgs, len(errors)]


@scenario(
    "request_over_max_payload",
    {"sub": None, "pub": "MaxPayloadError"},
)
async def request_over_max_payload(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    return await ctx.outcome(nc.request(ctx.s("nobody"), b"x" * (nc.max_payload + 1)))


@scenario(
    "unsubscribe_limit_already_reached",
    {"sub": None, "pub": [3, [0, 1, 2]]},
)
async def unsubscribe_limit_already_reached(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    pub = await ctx.connect()
    sub = await nc.subscribe(ctx.s("l"))
    await ctx.sync(nc)
    for i in range(3):
        await pub.publish(ctx.s("l"), str(i).encode())
    await ctx.sync(pub)
    await wait_until(lambda: sub.pending_msgs >= 3, 3.0)
    await sub.unsubscribe(limit=2)
    pending = sub.pending_msgs
    got: list[int] = []
    for _ in range(3):
        try:
            got.append(int((await sub.next_msg(timeout=0.1)).data))
        except Exception:
            break
    return [pending, got]


@scenario(
    "local_headers",
    {"sub": None, "pub": [None, {"k": "v"}, False]},
)
async def local_headers(ctx: Ctx) -> Any:
    nc = await ctx.connect()
    sub = await nc.subscribe(ctx.s("h"))
    await ctx.sync(nc)
    sent = {"k": "v"}
    await nc.publish(ctx.s("h"), b"0", headers={})
    await nc.publish(ctx.s("h"), b"1", headers=sent)
    await ctx.sync(nc)
    a, b = await collect(sub, 2)
    return [a.headers, b.headers, b.headers is sent]
