"""Loads the compiled fast path unless HYPERSERVE_NO_NATIVE=1 asks for the pure-Python twins."""

from __future__ import annotations

import os
from types import ModuleType

native: ModuleType | None = None

if os.environ.get("HYPERSERVE_NO_NATIVE", "") not in ("1", "true", "yes"):
    try:
        from hyperserve import _native as native  # type: ignore[no-redef]
    except ImportError:  # an install without the compiled extension still serves, more slowly
        native = None
