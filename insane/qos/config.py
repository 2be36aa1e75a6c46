"""Finding and loading ``insane.yaml``; every problem becomes one `ConfigError` line.

Lookup when no source is given: the file named by ``INSANE_CONFIG``, else ``./insane.yaml``,
else the embedded default (every field at its default). A message names the file, the key
path and what was expected, e.g. ``insane.yaml: channels."orders.>".reliability: expected
one of 'best_effort', 'reliable', got 'sure'``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from insane.qos.model import EMBEDDED_DEFAULT, Config, yaml_repr

#: The environment variable naming the configuration file.
ENV_VAR = "INSANE_CONFIG"
#: The file looked for in the working directory.
DEFAULT_FILE = "insane.yaml"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ConfigError(ValueError):
    """A configuration that cannot be used; one line per problem: file, key path, expectation."""


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
) -> Config:
    """Load and validate the configuration from a file, a parsed mapping, or by lookup."""
    if isinstance(source, Config):
        return source
    if isinstance(source, Mapping):
        return _validate(source, "<dict>")
    if source is not None:
        return _load_file(Path(source))
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"{path}: {ENV_VAR} names a file that does not exist")
        return _load_file(path)
    if Path(DEFAULT_FILE).is_file():
        return _load_file(Path(DEFAULT_FILE))
    return Config.model_validate({}, context={"source": EMBEDDED_DEFAULT})


def _load_file(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = e.problem or e.context or "syntax error"
        raise ConfigError(f"{path}: {where}not valid YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return _validate({} if data is None else data, str(path))


def _validate(data: object, source: str) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: top level: expected a mapping, got {yaml_repr(data)}")
    try:
        return Config.model_validate(data, context={"source": source})
    except ValidationError as e:
        lines = [f"{source}: {line}" for err in e.errors() for line in _describe(err)]
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None


def _describe(err: ErrorDetails) -> list[str]:
    """One or more ``key.path: problem`` lines for one pydantic error."""
    loc: list[str | int] = [p for p in err["loc"] if p != "[key]"]
    ctx = err.get("ctx") or {}
    if "at" in ctx:
        loc.append(ctx["at"])
    kind = err["type"]
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return [f"{key_path(loc)}: expected a mapping, got {yaml_repr(err['input'])}"]
    if kind == "extra_forbidden":
        known = ", ".join(_keys_at(loc[:-1]))
        return [f"{key_path(loc)}: unknown key (expected one of {known})"]
    if kind == "missing":
        return [f"{key_path(loc)}: required"]
    msg = err["msg"]
    if not kind.startswith("insane_"):
        msg = f"{msg}, got {yaml_repr(err['input'])}"
    return [f"{key_path(loc)}: {msg}"]


def _keys_at(loc: Sequence[str | int]) -> tuple[str, ...]:
    """The keys the section at ``loc`` accepts, found by walking the models from `Config`."""
    tp: Any = Config
    for part in loc:
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            tp = field.annotation if field is not None else None
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif get_origin(tp) is tuple:
            tp = get_args(tp)[0]
        else:
            return ()
    return tuple(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else ()


def key_path(loc: Sequence[str | int]) -> str:
    """Render a location as ``channels."orders.>".reliability`` or ``discovery.peers[0]``."""
    out = ""
    for i, part in enumerate(loc):
        if i == 1 and loc[0] == "channels":  # a subject pattern: always quoted
            name = json.dumps(str(part))
        elif isinstance(part, int):
            out += f"[{part}]"
            continue
        else:
            name = part if _IDENT.match(part) else json.dumps(part)
        out += f".{name}" if out else name
    return out or "top level"


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects a key written twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue  # unhashable: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
