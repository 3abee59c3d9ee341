"""``uringio.http`` moved to ``uringio.protocols.http``; this name still imports
it (the same module object, so nothing differs but the path)."""

import sys

from .protocols import http as _module

sys.modules[__name__] = _module
