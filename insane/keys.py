"""Loading a domain's secret keys for ``security:`` (files and environment, never the YAML).

Errors name the configuration file, the key and what was expected, as configuration errors
do everywhere else.
"""

from __future__ import annotations

import os
import time

from insane.protocol.security import MIN_KEY_BYTES, Keyring
from insane.qos import Config
from insane.qos.config import ConfigError


def _read(config: Config, what: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    except OSError as exc:
        raise ConfigError(
            f"{config.source}: security.{what}: expected a readable key file, got {path!r} "
            f"({exc.strerror})"
        ) from None
    return data


def _check(config: Config, what: str, key: bytes, where: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{config.source}: security.{what}: expected at least {MIN_KEY_BYTES} bytes of "
            f"secret, got {len(key)} in {where}"
        )
    return key


def load_keyring(config: Config) -> Keyring | None:
    """The keys ``config.security`` names, or None when ``mode`` is ``none``."""
    sec = config.security
    if sec.mode == "none":
        return None
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
