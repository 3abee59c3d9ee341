"""``uringio.files``: asyncio's file API on uringio (``uringio.aio.files``),
under a short name (the same module object)."""

import sys

from .aio import files as _module

sys.modules[__name__] = _module
