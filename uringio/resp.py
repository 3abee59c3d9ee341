"""``uringio.resp`` moved to ``uringio.protocols.resp``; this name still imports
it (the same module object, so nothing differs but the path)."""

import sys

from .protocols import resp as _module

sys.modules[__name__] = _module
