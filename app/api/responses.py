"""The API's JSON responses: one datetime format everywhere (RFC 3339 in UTC with ``Z``).

Routes build their answers from Pydantic models (which write ``Z``) and from
``datetime.isoformat()`` (which writes ``+00:00``). :class:`ApiJSONResponse`, the
app's default response class, rewrites every JSON string that is exactly a UTC
timestamp ending in ``+00:00`` to end in ``Z`` instead, so clients parse one format
whichever route (or engineer) produced it. Only whole string values are touched.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.responses import JSONResponse

_UTC_OFFSET = re.compile(rb'"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)\+00:00"')


def utc_z(body: bytes) -> bytes:
    """``body`` (JSON) with each whole-string ``...+00:00`` timestamp written ``...Z``."""
    return _UTC_OFFSET.sub(rb'"\1Z"', body)


class ApiJSONResponse(JSONResponse):
    """JSON with RFC 3339 ``Z`` timestamps (see the module)."""

    def render(self, content: Any) -> bytes:
        return utc_z(super().render(content))
