"""The native data plane: C sources in ``src/``, built into ``insane.engine._engine``.

``native()`` gives the compiled module, or raises ImportError saying why it is not there
(no compiler or libcrypto headers when the package was installed: the Python data plane,
insane/protocol, stands in). The parts the native node puts behind the `PeerNode` contract
are in node.py; every part has its Python reference in insane/protocol, and the tests hold the
two to the same results.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_module: ModuleType | None = None
_error: ImportError | None = None


def native() -> ModuleType:
    """The compiled engine module (ImportError if it was not built)."""
    global _module, _error
    if _module is None:
        if _error is not None:
            raise _error
        try:
            _module = importlib.import_module("insane.engine._engine")
        except ImportError as exc:
            _error = ImportError(f"the native engine was not built ({exc})")
            raise _error from None
    return _module


def available() -> bool:
    try:
        native()
    except ImportError:
        return False
    return True
