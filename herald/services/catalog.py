"""Profile databases, resources and stop lists: their commands and the snapshots other commands need."""

from __future__ import annotations

from herald.domain import databases, resources
from herald.domain.errors import NotFound
from herald.projections.catalog import CatalogProjection, SqliteStopListLookup
from herald.services.aggregates import Aggregates


class CatalogService:
    def __init__(self, aggregates: Aggregates, catalog: CatalogProjection) -> None:
        self.aggregates = aggregates
        self.projection = catalog
        self.stop_list_lookup = SqliteStopListLookup(catalog.conn)

    def database(self, database_id: str, path: str = "database_id") -> databases.DatabaseState:
        """The database's current schema, read from its stream (strongly consistent)."""
        state = self.aggregates.load(databases.database_decider, databases.database_stream(database_id)).state
        if not state.exists:
            raise NotFound(f"no profile database {database_id!r}", path)
        return state

    def resource(self, resource_id: str, path: str = "resource_id") -> resources.ResourceState:
        """The resource's current settings, read from its stream."""
        state = self.aggregates.load(resources.resource_decider, resources.resource_stream(resource_id)).state
        if not state.exists:
            raise NotFound(f"no resource {resource_id!r}", path)
        return state
