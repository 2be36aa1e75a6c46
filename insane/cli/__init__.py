"""The ``insane`` command: doctor, qos explain, pub, req, reply, sub, top and monitor.

Every ordinary failure prints one line, ``insane: ...`` (naming the file and key where there is
one), and exits with one of the codes in `EXIT_CODES`; ``--debug`` shows the traceback too.
The command is an application, so unlike the library it configures logging: warnings from the
library reach stderr, and ``-v`` shows the session's life at INFO.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Sequence

from insane import __version__
from insane.cli.failures import (
    BROKEN_PIPE,
    DESCRIPTION,
    EXIT_CODES,
    FAILED,
    INTERRUPTED,
    OK,
    USAGE,
    CommandError,
)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="YAML file (default: $INSANE_CONFIG, then ./insane.yaml)")


def cmd_doctor(args: argparse.Namespace) -> int:
    from insane.cli.doctor import doctor_report, format_doctor
    from insane.qos import load_config

    report = doctor_report(load_config(args.config))
    print(json.dumps(report, indent=2) if args.json else format_doctor(report))
    return OK if report["ok"] else FAILED


def cmd_explain(args: argparse.Namespace) -> int:
    from insane.qos import explain, load_config
    from insane.subjects import validate_subject
    from insane.transports.registry import probe_all

    config = load_config(args.config)
    validate_subject(args.subject)
    peer = args.peer.split(",") if args.peer else None
    print(explain(args.subject, config, probe_all(config), peer))
    return OK


def cmd_top(args: argparse.Namespace) -> int:
    from insane.ops import top
    from insane.qos import load_config

    width = shutil.get_terminal_size((80, 24)).columns
    if args.url:
        collect = top.scrape_urls([top.metrics_url(u) for u in args.url])
        return top.run(collect, args.interval, args.once, _write, width)
    m = load_config(args.config).metrics
    if not m.port:
        raise CommandError(
            "top: give a metrics URL, or a config whose metrics.port is set", USAGE
        )
    collect = top.scrape_range(m.bind, m.port, m.port_span)
    if args.once and not collect():
        last = m.port + m.port_span - 1
        raise CommandError(f"top: no INSANE metrics on {m.bind}:{m.port}-{last}")
    return top.run(collect, args.interval, args.once, _write, width)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    from insane.cli import messages, monitor

    parser = argparse.ArgumentParser(
        prog="insane",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"insane {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the session does")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error, not just its line"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("doctor", help="which transports work here, and why not")
    _config_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_doctor)

    qos = sub.add_parser("qos", help="QoS tools").add_subparsers(
        dest="qos_command", required=True, metavar="COMMAND"
    )
    p = qos.add_parser("explain", help="why a subject goes where it goes")
    _config_arg(p)
    p.add_argument("subject")
    p.add_argument(
        "--peer", help="transports the peer advertises, comma separated (default: as ours)"
    )
    p.set_defaults(func=cmd_explain)

    messages.add_commands(sub, _config_arg)

    p = sub.add_parser("top", help="live view of running sessions, from their metrics")
    _config_arg(p)
    p.add_argument(
        "url",
        nargs="*",
        help="metrics endpoints (host:port or URL); default: every INSANE process answering "
        "in the config's metrics port range, looked for again at every refresh",
    )
    p.add_argument("-i", "--interval", type=float, default=1.0, help="seconds between scrapes")
    p.add_argument("--once", action="store_true", help="print one view (two scrapes) and exit")
    p.set_defaults(func=cmd_top)

    monitor.add_command(sub, _config_arg)
    return parser


def _failure(exc: BaseException) -> tuple[int, str] | None:
    """The exit status and line for an ordinary failure; None for a bug."""
    from insane import errors
    from insane.cli.templates import TemplateError
    from insane.ops.metrics_http import MetricsPortError
    from insane.qos import ConfigError
    from insane.subjects import SubjectError

    if isinstance(exc, CommandError):
        return exc.status, str(exc)
    if isinstance(exc, ConfigError | SubjectError | TemplateError | MetricsPortError):
        return USAGE, str(exc)
    if isinstance(exc, errors.Error):
        return FAILED, str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return FAILED, str(exc)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="insane: %(levelname)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        status = int(func(args) or 0)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`insane ... | head`): say nothing, and keep the interpreter's
        # own flush at exit from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        failure = _failure(exc)
        if failure is None:  # a bug of ours
            how = "above" if args.debug else "with --debug"
            print(
                f"insane: internal error: {type(exc).__name__}: {exc} "
                f"(please report it, with the traceback {how})",
                file=sys.stderr,
            )
            return FAILED
        status, text = failure
        for line in text.splitlines() or [type(exc).__name__]:
            print(f"insane: {line}", file=sys.stderr)
        return status
