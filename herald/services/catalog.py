"""Profile databases, resources and stop lists: their commands and the snapshots other commands need.

Decisions where the guide is silent:
- Ids are short sequential numbers per kind ("1", "2", …), as the product shows
  them (`#4 - Клиенты B2C`, `resource_id: 7`). The next id is the first number
  past those the catalog has seen whose stream is empty, claimed by appending
  with an expected version of 0, so two concurrent creates never share an id
  and a deleted object's id (its stream stays) is never reused. An
  Idempotency-Key does not make a create a no-op on retry: the retry gets the
  next id.
- A resource token is 24 random hex characters from the injected id source.
- A request that needs several commands on one database or resource (create a
  resource with its categories, subscription fields and unsubscribe policy;
  rename a category and change its options) sends a plan: the commands are
  decided one after another on the state each leaves, and all their events are
  appended at once, so the request is all or nothing.
- A plan is made from the very state the append is checked against, so a
  command built from the current state (a partial change merged into it,
  enable-or-update of a channel) has no window between read and write.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from herald.domain import databases, resources, stop_lists
from herald.domain.decider import Decider
from herald.domain.errors import DomainError, NotFound
from herald.domain.events import Event
from herald.infra.event_store import WrongExpectedVersion
from herald.projections.catalog import DATABASE, RESOURCE, STOP_LIST, CatalogProjection, SqliteStopListLookup
from herald.services.aggregates import Aggregates, CommandContext, Loaded, Outcome

S = TypeVar("S")
RESOURCE_TOKEN_BYTES = 12


@dataclass(frozen=True, slots=True)
class Step:
    """One command of a plan, and where its errors point in the request body.

    `roots` re-roots an error path's first segment (`{"field": ""}` turns
    `field.name` into `name`); other paths are nested under `prefix`.
    """

    command: Any
    prefix: str = ""
    roots: Mapping[str, str] = field(default_factory=dict)

    def placed(self, error: DomainError) -> DomainError:
        """`error` with its path as the request body spells it."""
        head, _, rest = error.path.partition(".")
        if head in self.roots:
            path = ".".join(p for p in (self.roots[head], rest) if p)
        else:
            path = ".".join(p for p in (self.prefix, error.path) if p)
        return type(error)(error.reason, path)


Plan = Callable[[Any], Sequence[Any]]
"""The commands (or `Step`s) to decide, made from the aggregate's current state."""


def planned(decider: Decider[Any, S]) -> Decider[Plan, S]:
    """`decider` taking plans: each step is decided on the state the steps before it left."""

    def decide(plan: Plan, state: S) -> list[Event]:
        events: list[Event] = []
        for item in plan(state):
            step = item if isinstance(item, Step) else Step(item)
            try:
                new = list(decider.decide(step.command, state))
            except DomainError as error:
                raise step.placed(error) from None
            state = decider.fold(new, state)
            events.extend(new)
        return events

    return Decider(decider.initial, decide, decider.evolve)


# Module constants: the command path caches folds by decider identity.
DATABASES = planned(databases.database_decider)
RESOURCES = planned(resources.resource_decider)


class CatalogService:
    def __init__(
        self, aggregates: Aggregates, catalog: CatalogProjection, name_entry: stop_lists.EntryNamer
    ) -> None:
        self.aggregates = aggregates
        self.projection = catalog
        # one instance: the command path caches folds by decider identity
        self.stop_lists = stop_lists.stop_list_decider_for(name_entry)
        self.stop_list_lookup = SqliteStopListLookup(catalog.conn, name_entry)

    # --- snapshots -----------------------------------------------------------------------------

    def database(self, database_id: str, path: str = "database_id") -> databases.DatabaseState:
        """The database's current schema, read from its stream (strongly consistent)."""
        return self.loaded_database(database_id, path).state

    def resource(self, resource_id: str, path: str = "resource_id") -> resources.ResourceState:
        """The resource's current settings, read from its stream."""
        return self.loaded_resource(resource_id, path).state

    def resource_by_token(self, token: str, path: str = "resource_token") -> resources.ResourceState:
        """The resource a resource token (given to site and app developers) names; NotFound otherwise."""
        given = token.encode()  # compare_digest refuses str with non-ASCII characters; bytes it takes
        for doc in self.projection.objects(RESOURCE):
            if token and hmac.compare_digest(str(doc.get("token", "")).encode(), given):
                return self.resource(str(doc["resource_id"]), path)
        raise NotFound("no resource has this token", path)

    def loaded_database(self, database_id: str, path: str = "database_id") -> Loaded[databases.DatabaseState]:
        """The database and its stream version; NotFound if it does not exist."""
        loaded = self.aggregates.load(DATABASES, databases.database_stream(database_id))
        if not loaded.state.exists:
            raise NotFound(f"no profile database {database_id!r}", path)
        return loaded

    def loaded_resource(self, resource_id: str, path: str = "resource_id") -> Loaded[resources.ResourceState]:
        """The resource and its stream version; NotFound if it does not exist."""
        loaded = self.aggregates.load(RESOURCES, resources.resource_stream(resource_id))
        if not loaded.state.exists:
            raise NotFound(f"no resource {resource_id!r}", path)
        return loaded

    def stop_list(self, list_id: str, path: str = "list_id") -> Loaded[stop_lists.StopListState]:
        """The stop list (entries folded) and its version; a built-in list exists once it has a stream."""
        loaded = self.aggregates.load(self.stop_lists, stop_lists.stop_list_stream(list_id))
        if not loaded.state.exists:
            raise NotFound(f"no stop list {list_id!r}", path)
        return loaded

    def listed_stop_list(self, list_id: str, path: str = "list_id") -> dict[str, Any]:
        """The stop list's summary as the catalog read model lists it (where its entries are read too)."""
        for doc in self.projection.objects(STOP_LIST):
            if doc["list_id"] == list_id:
                return doc
        raise NotFound(f"no stop list {list_id!r}", path)

    # --- databases -----------------------------------------------------------------------------

    def create_database(
        self, command_for: Callable[[str], databases.CreateDatabase], context: CommandContext
    ) -> tuple[str, Outcome]:
        """Create a database under the next free id; `command_for(id)` makes the command."""
        seen = len(self.projection.objects(DATABASE, include_deleted=True))
        return self.create_numbered(
            DATABASES, databases.database_stream, seen, lambda i: lambda _: [command_for(i)], context
        )

    def change_database(
        self, database_id: str, plan: Plan, context: CommandContext, expected_version: int | None = None
    ) -> Outcome:
        """Decide `plan` on the database and append its events at once."""
        stream = databases.database_stream(database_id)
        return self.aggregates.execute(DATABASES, stream, plan, context, expected_version)

    def ensure_attachable(self, list_id: str, path: str = "stop_list_id") -> None:
        """Refuse `list_id` unless it names an existing custom stop list."""
        state = self.aggregates.load(self.stop_lists, stop_lists.stop_list_stream(list_id)).state
        stop_lists.ensure_attachable(state, list_id, path)

    # --- resources -----------------------------------------------------------------------------

    def create_resource(
        self, plan_for: Callable[[str, str], Plan], context: CommandContext
    ) -> tuple[str, Outcome]:
        """Create a resource under the next free id; `plan_for(id, token)` plans its commands."""
        token = self.aggregates.ids.token(RESOURCE_TOKEN_BYTES)
        seen = len(self.projection.objects(RESOURCE, include_deleted=True))
        return self.create_numbered(
            RESOURCES, resources.resource_stream, seen, lambda i: plan_for(i, token), context
        )

    def change_resource(
        self, resource_id: str, plan: Plan, context: CommandContext, expected_version: int | None = None
    ) -> Outcome:
        """Decide `plan` on the resource and append its events at once."""
        stream = resources.resource_stream(resource_id)
        return self.aggregates.execute(RESOURCES, stream, plan, context, expected_version)

    # --- stop lists ----------------------------------------------------------------------------

    def create_stop_list(
        self, command_for: Callable[[str], stop_lists.CreateStopList], context: CommandContext
    ) -> tuple[str, Outcome]:
        """Create a custom stop list under the next free id."""
        seen = sum(
            doc["kind"] == stop_lists.StopListKind.CUSTOM
            for doc in self.projection.objects(STOP_LIST, include_deleted=True)
        )
        return self.create_numbered(self.stop_lists, stop_lists.stop_list_stream, seen, command_for, context)

    def change_stop_list(
        self,
        command: stop_lists.StopListCommand,
        context: CommandContext,
        expected_version: int | None = None,
    ) -> Outcome:
        stream = stop_lists.stop_list_stream(command.list_id)
        return self.aggregates.execute(self.stop_lists, stream, command, context, expected_version)

    def erase_stop_list_entries(self, digests: Sequence[str], at: datetime, context: CommandContext) -> None:
        """Every stop list holding an entry named in `digests` records it erased: it stays and keeps
        matching, its value reads as erased (the erasure of the person it named)."""
        if not digests:
            return
        listed = {doc["list_id"] for doc in self.projection.objects(STOP_LIST)}
        for list_id in sorted(listed | set(stop_lists.BUILT_IN_LIST_IDS)):
            self.change_stop_list(stop_lists.EraseStopListEntries(list_id, tuple(digests), at), context)

    # --- ids -----------------------------------------------------------------------------------

    def create_numbered(
        self,
        decider: Decider[Any, Any],
        stream_of: Callable[[str], str],
        seen: int,
        command_for: Callable[[str], Any],
        context: CommandContext,
    ) -> tuple[str, Outcome]:
        number = seen
        while True:
            number += 1
            candidate = str(number)
            stream = stream_of(candidate)
            if self.aggregates.store.stream_version(stream) != 0:
                continue
            try:
                outcome = self.aggregates.execute(decider, stream, command_for(candidate), context, 0)
            except WrongExpectedVersion:
                continue  # another request took this id between the probe and the append
            return candidate, outcome
