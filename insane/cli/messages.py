"""``insane pub``, ``req``, ``reply`` and ``sub``: messages from the shell, as the nats CLI does.

Bodies and header values are templates (`insane.cli.templates`: ``{{Count}}``, ``{{Time}}``,
...); headers are given as ``-H Key:value``. Received messages print as the nats CLI prints
them::

    [#1] Received on "greet.world" with reply "_INBOX.1a2b....1"
    Trace: 1

    hello

Status lines (``Listening on ...``, no subscriber known) go to stderr, so stdout carries only
messages and replies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from insane.cli.failures import CommandError
from insane.cli.templates import check, render

if TYPE_CHECKING:
    from insane.api.message import Msg
    from insane.api.session import Session

#: The nats CLI's queue group for ``reply``: several repliers share the requests.
REPLY_QUEUE = "NATS-RPLY-22"


def _headers(specs: list[str] | None, count: int) -> dict[str, str] | None:
    if not specs:
        return None
    out: dict[str, str] = {}
    for spec in specs:
        key, sep, value = spec.partition(":")
        if not sep or not key.strip():
            raise CommandError(f"-H {spec!r}: expected KEY:VALUE", 2)
        out[key.strip()] = render(value.strip(), count)
    return out


def _check_templates(args: argparse.Namespace, request: bool = False) -> None:
    check(args.body, request)
    _headers(args.header, 1)


def _show(msg: Msg, number: int, raw: bool) -> None:
    """One received message, as ``nats sub`` shows it (``--raw``: the payload alone)."""
    text = msg.data.decode(errors="replace")
    if raw:
        print(text, flush=True)
        return
    with_reply = f" with reply {json.dumps(msg.reply)}" if msg.reply else ""
    lines = [f"[#{number}] Received on {json.dumps(msg.subject)}{with_reply}"]
    if msg.headers:
        lines += [f"{k}: {v}" for k, v in msg.headers.items()]
        lines.append("")
    lines += [text, ""]
    print("\n".join(lines), flush=True)


async def _wait_for_subscribers(s: Session, subject: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not s.has_subscribers(subject) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return s.has_subscribers(subject)


async def _pub(args: argparse.Namespace) -> int:
    import insane

    _check_templates(args)
    async with insane.connect(args.config, name=args.name) as s:
        if not await _wait_for_subscribers(s, args.subject, args.wait):
            print(
                f"insane: no subscriber is known for {args.subject}: "
                f"publishing {args.count} message{'s' if args.count != 1 else ''} to nobody",
                file=sys.stderr,
                flush=True,
            )
        for i in range(1, args.count + 1):
            await s.publish(
                args.subject, render(args.body, i).encode(), headers=_headers(args.header, i)
            )
            if args.sleep:
                await asyncio.sleep(args.sleep)
        await s.flush()
    return 0


async def _req(args: argparse.Namespace) -> int:
    import insane
    from insane import errors

    _check_templates(args)
    async with insane.connect(args.config, name=args.name) as s:
        await _wait_for_subscribers(s, args.subject, args.wait)
        for i in range(1, args.count + 1):
            try:
                reply = await s.request(
                    args.subject,
                    render(args.body, i).encode(),
                    timeout=args.timeout,
                    headers=_headers(args.header, i),
                )
            except errors.NoRespondersError:
                raise CommandError(f"no responders on {args.subject}") from None
            except errors.TimeoutError:
                raise CommandError(
                    f"no reply on {args.subject} within {args.timeout:g} s"
                ) from None
            if reply.headers and not args.raw:
                print("\n".join(f"{k}: {v}" for k, v in reply.headers.items()) + "\n")
            print(reply.data.decode(errors="replace"), flush=True)
            if args.sleep:
                await asyncio.sleep(args.sleep)
    return 0


async def _reply(args: argparse.Namespace) -> int:
    import insane

    _check_templates(args, request=True)
    echo = args.echo or not args.body
    done = asyncio.Event()
    answered = 0

    async with insane.connect(args.config, name=args.name) as s:

        async def answer(msg: Msg) -> None:
            nonlocal answered
            n = answered  # the nats CLI numbers replies from 0
            _show(msg, n, args.raw)
            if echo:
                await msg.respond(msg.data)
            else:
                request = msg.data.decode(errors="replace")
                await msg.respond(
                    render(args.body, n, request).encode(), headers=_headers(args.header, n) or {}
                )
            answered += 1
            if args.count and answered >= args.count:
                done.set()

        await s.subscribe(args.subject, queue=args.queue, cb=answer)
        await s.flush()
        print(f'Listening on "{args.subject}" in group "{args.queue}"', file=sys.stderr, flush=True)
        await done.wait()
        await s.flush()
    return 0


async def _sub(args: argparse.Namespace) -> int:
    import insane

    async with insane.connect(args.config, name=args.name) as s:
        sub = await s.subscribe(args.subject, queue=args.queue)
        await s.flush()
        group = f' in group "{args.queue}"' if args.queue else ""
        print(f'Listening on "{args.subject}"{group}', file=sys.stderr, flush=True)
        n = 0
        async for msg in sub.messages:
            n += 1
            _show(msg, n, args.raw)
            if args.count and n >= args.count:
                break
    return 0


def _run(coro: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    return lambda args: int(asyncio.run(coro(args)))


def add_commands(
    sub: Any, config_arg: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add pub, req, reply and sub to the ``insane`` parser's subcommands."""

    def common(p: argparse.ArgumentParser, body_help: str) -> None:
        config_arg(p)
        p.add_argument("subject")
        p.add_argument("body", nargs="?", default="", help=body_help)
        p.add_argument(
            "-H", "--header", action="append", metavar="KEY:VALUE", help="a header, repeatable"
        )
        p.add_argument("--name", help="this session's name (default: host:pid)")

    templates = "templates: {{Count}} (the message number), {{Time}}, {{TimeStamp}}, " \
        "{{Unix}}, {{UnixNano}}, {{ID}}, {{UUID}}, {{Random MIN MAX}}"

    p = sub.add_parser("pub", help="publish messages", epilog=templates)
    common(p, "the payload (a template)")
    p.add_argument("-n", "--count", type=int, default=1, help="messages to publish (default 1)")
    p.add_argument(
        "--sleep", "--interval", type=float, default=0.0, metavar="SECONDS",
        help="pause between messages",
    )  # fmt: skip
    p.add_argument(
        "--wait", "--wait-for-peers", type=float, default=0.0, metavar="SECONDS",
        help="wait up to this long for a subscriber before publishing",
    )  # fmt: skip
    p.set_defaults(func=_run(_pub))

    p = sub.add_parser(
        "req",
        aliases=["request"],
        help="send requests and print the replies (exit 1: no responders, or no reply in time)",
        epilog=templates,
    )
    common(p, "the request payload (a template)")
    p.add_argument("-n", "--count", type=int, default=1, help="requests to send (default 1)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each reply")
    p.add_argument("--sleep", type=float, default=0.0, metavar="SECONDS", help="between requests")
    p.add_argument("--raw", action="store_true", help="print the reply's payload only")
    p.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS",
        help="wait up to this long for a responder to be known before the first request",
    )  # fmt: skip
    p.set_defaults(func=_run(_req))

    p = sub.add_parser(
        "reply",
        help="answer requests: with BODY, or with each request's own payload",
        epilog=templates + ", {{Request}} (the request's payload); replies count from 0",
    )
    common(p, "the reply payload (a template); without it, requests are echoed")
    p.add_argument("--echo", action="store_true", help="answer with the request's payload")
    p.add_argument(
        "-q", "--queue", default=REPLY_QUEUE, help=f"queue group (default {REPLY_QUEUE})"
    )
    p.add_argument("-n", "--count", type=int, default=0, help="exit after this many requests")
    p.add_argument("--raw", action="store_true", help="print request payloads only")
    p.set_defaults(func=_run(_reply))

    p = sub.add_parser("sub", aliases=["subscribe"], help="subscribe and print messages")
    config_arg(p)
    p.add_argument("subject")
    p.add_argument("-q", "--queue", help="queue group")
    p.add_argument("-n", "--count", type=int, default=0, help="exit after this many messages")
    p.add_argument("--raw", action="store_true", help="print payloads only")
    p.add_argument("--name", help="this session's name (default: host:pid)")
    p.set_defaults(func=_run(_sub))
