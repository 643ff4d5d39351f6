"""(being written)"""

from __future__ import annotations

from herald.api.endpoints import Endpoint

ENDPOINTS: list[Endpoint] = []
