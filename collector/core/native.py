"""The store's optional C extension (``_rowbuild.c``), or ``None`` where it was not built.

The install compiles it when a C compiler is present; without one, the store, the scaled-amount
binding and the columnar importers do the same work in Python (tests compare the two).
"""

from __future__ import annotations

try:
    from collector.core import _rowbuild as rowbuild
except ImportError:  # built without a C compiler (the extension is optional)
    rowbuild = None  # type: ignore[assignment]

__all__ = ["rowbuild"]
