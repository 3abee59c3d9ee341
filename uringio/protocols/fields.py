"""HTTP fields an app writes: what may go into a response head.

RFC 9110 §5.1 makes a field name a token and §5.5 a field value visible
characters, obs-text, spaces and tabs. Anything else -- a CR, LF or NUL
above all -- would let a value end its header line, or the head, and write
headers or a body the app never meant (response splitting, the class of
CVE-2020-7695 in uvicorn). Values are often the client's own bytes echoed
back (a redirect's Location, a cookie), so the server checks every header
before a byte of the head is written, as h11 and uvicorn do. The C paths
make the same check (``field_name_ok``/``field_value_ok`` in
``_build/http_glue.h``) and hand a header that fails it to the Python that
raises here, so the refusal and its message are written once.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_NOT_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


# Statuses whose response has no content, whatever the app gives (RFC 9110
# §8.6, §15.3.5, §15.4.5): a body written after one would be read by the
# client as the start of the next response.
NO_CONTENT_STATUSES = frozenset((204, 304))


def is_final_status(status: object) -> bool:
    """Whether an app's ``status`` can be written as a response's: an int
    from 200 to 999. A 1xx is interim to a client, which would then read
    the next response as this one's."""
    return isinstance(status, int) and not isinstance(status, bool) and 200 <= status <= 999


class InvalidField(ValueError):
    """A response header that cannot be written as it is."""


def check_field(name: bytes, value: bytes) -> None:
    """Raise InvalidField unless ``name: value`` is a header line that ends
    where it seems to (both bytes)."""
    if not _TOKEN.match(name):
        raise InvalidField(f"invalid response header name {name!r}: a name is a token "
                           "(RFC 9110 §5.1)")
    if _NOT_IN_VALUE.search(value):
        raise InvalidField(f"invalid value {value!r} for response header {name!r}: CR, LF, "
                           "NUL and other control characters would split the response "
                           "(RFC 9110 §5.5)")
