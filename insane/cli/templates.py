"""Message templates of ``insane pub``, ``req`` and ``reply``, as the nats CLI writes them.

A body or header value may hold ``{{Count}}`` (the message number), ``{{TimeStamp}}`` (RFC 3339),
``{{Unix}}``, ``{{UnixNano}}``, ``{{Time}}`` (``3:04PM``), ``{{ID}}`` (unique), ``{{UUID}}``,
``{{Random 10 100}}`` (a random string of 10 to 100 letters and digits) and, in a reply,
``{{Request}}`` (the request's payload). Spaces inside the braces and Go's leading dot
(``{{ .Count }}``) are accepted. Numbering is the nats CLI's: ``pub`` and ``req`` count from 1,
``reply`` from 0.
"""

from __future__ import annotations

import datetime
import itertools
import os
import random
import re
import string
import time
import uuid
from collections.abc import Callable

_FIELD = re.compile(r"\{\{\s*\.?([A-Za-z]+)((?:\s+-?\d+)*)\s*\}\}")
_LETTERS = string.ascii_letters + string.digits
_ids = itertools.count(1)
_ID_PREFIX = os.urandom(6).hex().upper()


class TemplateError(ValueError):
    """A template names a function that does not exist, or calls one wrongly."""


def _random(low: int, high: int) -> str:
    if not 0 <= low <= high:
        raise TemplateError(f"Random {low} {high}: expected 0 <= min <= max")
    return "".join(random.choices(_LETTERS, k=random.randint(low, high)))


def _now_fields(now: float) -> dict[str, Callable[[], str]]:
    local = datetime.datetime.fromtimestamp(now).astimezone()
    return {
        "TimeStamp": lambda: local.isoformat(timespec="seconds"),
        "Unix": lambda: str(int(now)),
        "UnixNano": lambda: str(int(now * 1e9)),
        "Time": lambda: local.strftime("%I:%M%p").lstrip("0"),
        "ID": lambda: f"{_ID_PREFIX}{next(_ids):010d}",
        "UUID": lambda: str(uuid.uuid4()),
    }


def render(template: str, count: int, request: str | None = None) -> str:
    """``template`` with its ``{{...}}`` fields filled in for message number ``count``."""
    if "{{" not in template:
        return template
    fields = _now_fields(time.time())
    fields["Count"] = fields["Cnt"] = lambda: str(count)
    if request is not None:
        fields["Request"] = lambda: request

    def fill(m: re.Match[str]) -> str:
        name, args = m.group(1), [int(a) for a in m.group(2).split()]
        if name == "Random":
            if len(args) != 2:
                raise TemplateError("Random takes two numbers: {{Random MIN MAX}}")
            return _random(*args)
        fn = fields.get(name)
        if fn is None:
            known = ", ".join(sorted([*fields, "Random"]))
            raise TemplateError(f"unknown template function {name!r} (known: {known})")
        if args:
            raise TemplateError(f"{name} takes no arguments")
        return fn()

    return _FIELD.sub(fill, template)


def check(template: str, request: bool = False) -> None:
    """Raise `TemplateError` now for a template that would fail on every message."""
    render(template, 1, "" if request else None)
