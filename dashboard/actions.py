"""What the admin and import pages *do*, through the APIs of the features that own the data.

Connections (issue 3), CSV import (issue 4) and proxy monitor tokens (issue 5) are built on
other branches. Each is reached here through one small lookup that returns None while the
feature is not installed, so the pages can show an empty state that says what to do next; the
names looked up are the wiring points for the merge.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

from collector.http import redact

#: module -> the functions a page calls on it (looked up by name, used only when present).
CONNECTIONS_MODULE = "collector.connections"
TOKENS_MODULE = "collector.proxy.tokens"


def feature_function(module: str, name: str) -> Callable[..., Any] | None:
    """``module.name`` when that feature is installed in this build, else None."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    fn = getattr(mod, name, None)
    return fn if callable(fn) else None


def import_file_function() -> Callable[..., Any] | None:
    """``importers.service.import_file`` (issue 4) or None while CSV import is not installed."""
    try:
        from importers.service import import_file  # type: ignore[import-not-found]
    except ImportError:
        return None
    return import_file  # type: ignore[no-any-return]


def describe(result: Any) -> dict[str, Any]:
    """A result object (dataclass, mapping or plain object) as a dict of its public fields."""
    if is_dataclass(result) and not isinstance(result, type):
        data = asdict(result)
    elif isinstance(result, dict):
        data = dict(result)
    else:
        data = {k: v for k, v in vars(result).items() if not k.startswith("_")} if hasattr(result, "__dict__") else {}
    return data


def safe_message(exc: BaseException) -> str:
    """An exception as one line with anything key-shaped masked."""
    return redact(f"{type(exc).__name__}: {exc}")
