"""The ``insane`` command: doctor, qos explain, pub, sub and top."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence

from insane.qos import ConfigError, explain, load_config
from insane.subjects import SubjectError, validate_subject
from insane.transports.registry import doctor_report, format_doctor, probe_all


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="YAML file (default: $INSANE_CONFIG, then ./insane.yaml)")


def cmd_doctor(args: argparse.Namespace) -> int:
    report = doctor_report(load_config(args.config))
    print(json.dumps(report, indent=2) if args.json else format_doctor(report))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    validate_subject(args.subject)
    peer = args.peer.split(",") if args.peer else None
    print(explain(args.subject, config, probe_all(config), peer))
    return 0


async def _pub(args: argparse.Namespace) -> int:
    import insane

    headers = dict(h.split("=", 1) for h in args.header) if args.header else None
    async with insane.connect(args.config, name=args.name) as s:
        if args.wait_for_peers:
            deadline = time.monotonic() + args.wait_for_peers
            while not s.peers and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        data = args.data.encode()
        for i in range(args.count):
            payload = data.replace(b"{i}", str(i).encode())
            if args.request:
                reply = await s.request(
                    args.subject, payload, timeout=args.timeout, headers=headers
                )
                print(reply.data.decode(errors="replace"), flush=True)
            else:
                await s.publish(args.subject, payload, headers=headers)
            if args.interval:
                await asyncio.sleep(args.interval)
        await s.flush()
    return 0


async def _sub(args: argparse.Namespace) -> int:
    import insane

    async with insane.connect(args.config, name=args.name) as s:
        sub = await s.subscribe(args.subject, queue=args.queue)
        print(
            f"listening on {args.subject}" + (f" (queue {args.queue})" if args.queue else ""),
            flush=True,
        )
        n = 0
        async for msg in sub.messages:
            n += 1
            text = msg.data.decode(errors="replace")
            if args.raw:
                print(text, flush=True)
            else:
                hdr = f" {msg.headers}" if msg.headers else ""
                print(f"[#{n}] {msg.subject}{hdr}: {text}", flush=True)
            if args.echo and msg.reply:
                await msg.respond(msg.data)
            if args.count and n >= args.count:
                break
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from insane import top

    urls = list(args.url)
    if not urls:
        m = load_config(args.config).metrics
        if m.port is None or m.port == 0:
            print(
                "insane top: give a metrics URL, or a config whose metrics.port is set",
                file=sys.stderr,
            )
            return 2
        urls = top.find_endpoints(m.bind, m.port, m.port_span)
        if not urls:
            last = m.port + m.port_span - 1
            print(f"insane top: no INSANE metrics on {m.bind}:{m.port}-{last}", file=sys.stderr)
            return 1
    urls = [u if "/" in u.split("://", 1)[-1] else u.rstrip("/") + "/metrics" for u in urls]
    urls = [u if "://" in u else "http://" + u for u in urls]

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    return top.run(urls, args.interval, args.once, write)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insane", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the session does")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="which transports work here, and why not")
    _config_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_doctor)

    qos = sub.add_parser("qos", help="QoS tools").add_subparsers(dest="qos_command", required=True)
    p = qos.add_parser("explain", help="why a subject goes where it goes")
    _config_arg(p)
    p.add_argument("subject")
    p.add_argument(
        "--peer", help="transports the peer advertises, comma separated (default: as ours)"
    )
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("pub", help="publish messages")
    _config_arg(p)
    p.add_argument("subject")
    p.add_argument(
        "data", nargs="?", default="", help="payload; {i} is replaced by the message number"
    )
    p.add_argument("-n", "--count", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.0, help="seconds between messages")
    p.add_argument("-H", "--header", action="append", help="KEY=VALUE, repeatable")
    p.add_argument("--request", action="store_true", help="send as request, print replies")
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument(
        "--wait-for-peers",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for at least one peer before publishing",
    )
    p.add_argument("--name")
    p.set_defaults(func=lambda a: asyncio.run(_pub(a)))

    p = sub.add_parser("sub", help="subscribe and print messages")
    _config_arg(p)
    p.add_argument("subject")
    p.add_argument("-q", "--queue", help="queue group")
    p.add_argument("-n", "--count", type=int, default=0, help="exit after this many messages")
    p.add_argument("--raw", action="store_true", help="print payloads only")
    p.add_argument("--echo", action="store_true", help="answer requests with their own payload")
    p.add_argument("--name")
    p.set_defaults(func=lambda a: asyncio.run(_sub(a)))

    p = sub.add_parser("top", help="live view of running sessions, from their metrics")
    _config_arg(p)
    p.add_argument(
        "url",
        nargs="*",
        help="metrics endpoints (host:port or URL); default: every INSANE process answering "
        "in the config's metrics port range",
    )
    p.add_argument("-i", "--interval", type=float, default=1.0, help="seconds between scrapes")
    p.add_argument("--once", action="store_true", help="print one view (two scrapes) and exit")
    p.set_defaults(func=cmd_top)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (ConfigError, SubjectError) as exc:
        print(f"insane: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
