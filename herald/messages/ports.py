"""What the message pipeline reads from outside it, as ports the services implement (wired in
`api/wiring.py`), so the pipeline never imports `services/`."""

from __future__ import annotations

from typing import Any, Protocol

from herald.domain.databases import DatabaseState
from herald.domain.decider import Decider
from herald.domain.resources import ResourceState
from herald.domain.stop_lists import StopListLookup, StopListState


class Catalog(Protocol):
    """Databases, resources and stop lists (`services/catalog.CatalogService`)."""

    @property
    def stop_list_lookup(self) -> StopListLookup: ...

    @property
    def stop_lists(self) -> Decider[Any, StopListState]: ...

    def database(self, database_id: str, path: str = "database_id") -> DatabaseState: ...
    def resource(self, resource_id: str, path: str = "resource_id") -> ResourceState: ...
