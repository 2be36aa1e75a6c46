"""Loading a domain's secret keys for ``security:`` (files and environment, never the YAML).

Errors name the configuration file, the key and what was expected, as configuration errors
do everywhere else.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from insane.protocol.permissions import Permissions, Rules
from insane.protocol.security import MIN_KEY_BYTES, Keyring, key_id
from insane.qos import Config
from insane.qos.config import ConfigError


def _read(config: Config, what: str, path: str) -> bytes:
    """The key file ``path`` as written at ``security.<what>`` (relative to the YAML's
    directory)."""
    full = config.file_path(path)
    try:
        with open(full, "rb") as f:
            data = f.read(1 << 16)
    except OSError as exc:
        where = "" if full == path else f"{full}: "
        raise ConfigError(
            f"{config.source}: security.{what}: expected a readable key file, got {path!r} "
            f"({where}{exc.strerror})"
        ) from None
    return data


def _check(config: Config, what: str, key: bytes, where: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{config.source}: security.{what}: expected at least {MIN_KEY_BYTES} bytes of "
            f"secret, got {len(key)} in {where}"
        )
    return key


@dataclass(frozen=True)
class Identities:
    """With ``security.identities``: who each key belongs to, and what each may do."""

    own: str
    by_key: dict[bytes, str]
    permissions: dict[str, Permissions]


def _key_of(config: Config, where: str, key_file: str | None, key_env: str | None) -> bytes:
    if key_file:
        return _check(
            config, f"{where}key_file", _read(config, f"{where}key_file", key_file), key_file
        )
    if key_env:
        value = os.environ.get(key_env)
        if value is None:
            raise ConfigError(
                f"{config.source}: security.{where}key_env: expected the environment variable "
                f"{key_env} to hold the key, but it is not set"
            )
        return _check(config, f"{where}key_env", value.encode(), f"${key_env}")
    raise ConfigError(
        f"{config.source}: security.{where.rstrip('.') or 'key_file'}: expected key_file or "
        f"key_env with mode {config.security.mode}"
    )


def load_identities(config: Config) -> tuple[Keyring, Identities] | None:
    """The keys and permissions of ``security.identities`` (None when there are none)."""
    sec = config.security
    if sec.mode == "none" or not sec.identities:
        return None
    if sec.identity not in sec.identities:
        raise ConfigError(
            f"{config.source}: security.identity: expected one of "
            f"{', '.join(sorted(sec.identities))}, got {sec.identity!r}"
        )
    keys: dict[str, bytes] = {}
    perms: dict[str, Permissions] = {}
    for name, ident in sec.identities.items():
        keys[name] = _key_of(config, f"identities.{name}.", ident.key_file, ident.key_env)
        perms[name] = Permissions(
            Rules(ident.publish.allow, ident.publish.deny),
            Rules(ident.subscribe.allow, ident.subscribe.deny),
        )
    own = sec.identity
    others = [(k, float("inf")) for n, k in keys.items() if n != own]
    ring = Keyring(keys[own], others)
    return ring, Identities(own, {key_id(k): n for n, k in keys.items()}, perms)


def load_keyring(config: Config) -> Keyring | None:
    """The keys ``config.security`` names, or None when ``mode`` is ``none``."""
    sec = config.security
    if sec.mode == "none":
        return None
    with_identities = load_identities(config)
    if with_identities is not None:
        return with_identities[0]
    if sec.key_file:
        key = _check(config, "key_file", _read(config, "key_file", sec.key_file), sec.key_file)
    elif sec.key_env:
        value = os.environ.get(sec.key_env)
        if value is None:
            raise ConfigError(
                f"{config.source}: security.key_env: expected the environment variable "
                f"{sec.key_env} to hold the key, but it is not set"
            )
        key = _check(config, "key_env", value.encode(), f"${sec.key_env}")
    else:
        raise ConfigError(
            f"{config.source}: security: expected key_file or key_env with mode {sec.mode}"
        )
    previous: list[tuple[bytes, float]] = []
    if sec.previous_key_file:
        old = _read(config, "previous_key_file", sec.previous_key_file)
        _check(config, "previous_key_file", old, sec.previous_key_file)
        until = sec.previous_key_until if sec.previous_key_until is not None else float("inf")
        if until > time.time():
            previous.append((old, until))
    return Keyring(key, previous)
