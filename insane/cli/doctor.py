"""``insane doctor``: what this host and this configuration allow, and why not.

One entry per transport (from the probes in `insane.transports.registry`: available or not,
the reason, every check behind it), and the ``security`` section checked as ``connect()``
would check it (the key files present, readable and long enough). ``ok`` is false when
``connect()`` would fail with this configuration, or with the data plane (``engine``) that
``INSANE_ENGINE`` chooses; a transport that is unavailable here is not a failure, since the
policy falls back.
"""

from __future__ import annotations

import os
from typing import Any

from insane.protocol import speedups
from insane.qos import Config, ConfigError
from insane.qos.engine import ENGINES, engine_name, why_not_native
from insane.qos.keys import load_identities, load_keyring
from insane.transports.registry import probe_all


def _security(config: Config) -> dict[str, Any]:
    sec = config.security
    checks: dict[str, object] = {"mode": sec.mode}
    try:
        with_identities = load_identities(config)
        if with_identities is None:
            load_keyring(config)
    except ConfigError as exc:
        return {"ok": False, "reason": str(exc), "checks": checks}
    if sec.mode == "none":
        reason = "mode none: datagrams are neither authenticated nor encrypted"
    elif with_identities is not None:
        checks["identity"] = sec.identity
        checks["identities"] = sorted(sec.identities)
        reason = f"{sec.mode} as identity {sec.identity}, keys of {len(sec.identities)} identities"
    else:
        where = config.file_path(sec.key_file) if sec.key_file else f"${sec.key_env}"
        checks["key"] = where
        if sec.previous_key_file:
            checks["previous_key"] = config.file_path(sec.previous_key_file)
        reason = f"{sec.mode} with the key in {where}"
    return {"ok": True, "reason": reason, "checks": checks}


def _engine() -> dict[str, Any]:
    """The data plane ``INSANE_ENGINE`` chooses (connect() fails on one there is not)."""
    helpers = "native" if speedups.NATIVE else "python (INSANE_PURE_PYTHON or not built)"
    try:
        name = engine_name()
    except ConfigError as exc:
        return {"ok": False, "name": None, "reason": str(exc), "checks": {}}
    checks = {
        "implementation": ENGINES[name],
        "native_engine": _native_engine(),
        "per_message_helpers": helpers,
    }
    how = "INSANE_ENGINE" if os.environ.get("INSANE_ENGINE", "").strip() else "default"
    reason = f"the data plane in use ({how}; engines here: {', '.join(sorted(ENGINES))})"
    return {"ok": True, "name": name, "reason": reason, "checks": checks}


def _native_engine() -> str:
    """Whether the native engine was built, with what, and which parts it runs in C."""
    why = why_not_native()
    if why:
        return why
    from insane.engine import native
    from insane.engine.node import NATIVE_PARTS

    parts = ", ".join(NATIVE_PARTS) or "none yet"
    return f"built ({native().OPENSSL_VERSION}); parts in C: {parts}"


def doctor_report(config: Config) -> dict[str, Any]:
    """The JSON document of ``insane doctor --json``."""
    security = _security(config)
    security["checks"] = {k: _jsonable(v) for k, v in security["checks"].items()}
    engine = _engine()
    return {
        "config": config.source,
        "ok": security["ok"] and engine["ok"],
        "engine": engine,
        "transports": {
            name: {
                "available": cap.available,
                "reason": cap.reason,
                "kernel_bypass": cap.kernel_bypass,
                "checks": {k: _jsonable(v) for k, v in cap.details.items()},
            }
            for name, cap in probe_all(config).items()
        },
        "security": security,
    }


def format_doctor(report: dict[str, Any]) -> str:
    """`doctor_report` for humans: a line per transport and for security, checks indented."""
    lines = [f"configuration: {report['config']}"]
    eng = report["engine"]
    if eng["ok"]:
        lines.append(f"engine {eng['name']}  {eng['reason']}")
    else:
        lines.append(f"engine problem  {eng['reason']}")
    lines += [f"      {check}: {_show(v)}" for check, v in eng["checks"].items()]
    for name, entry in report["transports"].items():
        state = "available" if entry["available"] else "unavailable"
        lines.append(f"{name:<5} {state:<11}  {entry['reason']}")
        lines += [f"      {check}: {_show(v)}" for check, v in entry["checks"].items()]
    sec = report["security"]
    lines.append(f"security {'ok' if sec['ok'] else 'problem'}  {sec['reason']}")
    lines += [f"      {check}: {_show(v)}" for check, v in sec["checks"].items()]
    return "\n".join(lines)


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def _show(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)
