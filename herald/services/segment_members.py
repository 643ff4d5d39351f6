"""A segment query's members now: what the segment service, a campaign launch and the funnel ask.

`SegmentMembers.members(query, now, timezone)` first resolves what the evaluators take as given:
- each segment rule's segment, to its member ids: a static segment's stored members, a dynamic
  segment's query evaluated at the same instant in its own time zone (segments nest one level and
  `segments.check_query` refuses cycles at save time; a cycle met here is refused all the same);
- each external rule with a POST URL or CSV source, to its fetched values, coerced to the field's
  type, and turned into a pasted-list (`ListSource`) rule, which both evaluators compare like `in`.
  A fetch that fails raises (`ExternalSetFailed`, `NotFound` for an unknown file) and nothing is
  evaluated: a segment is never computed against half a set.

Then one engine evaluates the resolved query:
- `SqlMembers`: `reports.segment_sql` over the report store's `profile_snapshots` and history tables,
  when reports are on;
- `InProcessMembers`: `domain.segment_eval.members` over profile states and their facts, when reports
  are off (fine for the databases a server without a report store holds; it reads every profile).

Decisions where the task is silent: an external value that is not valid for the field's type (a word
in a number column) is skipped, since no profile can hold it; values are de-duplicated; `sample`
is the first members by profile id.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from herald.domain.errors import RuleViolated, ValidationFailed
from herald.domain.fields import FieldDefinition
from herald.domain.profiles import ProfileState
from herald.domain.segment_definitions import SegmentKind
from herald.domain.segment_eval import ProfileFacts
from herald.domain.segment_eval import members as evaluate_members
from herald.domain.segments import (
    AnyRule,
    CsvSource,
    ExternalRule,
    ListSource,
    PostUrlSource,
    SegmentQuery,
    Source,
    list_item,
)
from herald.infra.clickhouse import ClickHouse
from herald.reports.segment_sql import count_sql, members_sql

MemberSets = Mapping[str, Collection[str]]


# --- ports -------------------------------------------------------------------------------------


class SegmentCatalog(Protocol):
    """The stored segments a query's segment rules name."""

    def segment(self, segment_id: str) -> tuple[SegmentKind, SegmentQuery, str]:
        """The segment's kind, checked query and time zone; raises NotFound for an unknown one."""
        ...

    def static_members(self, segment_id: str) -> Collection[str]:
        """A static segment's current members."""
        ...


class ExternalValues(Protocol):
    """Where POST URL and CSV sets come from (`infra.external_sets`, `infra.segment_files`)."""

    def post_url(self, source: PostUrlSource, path: str) -> list[str]: ...

    def csv(self, source: CsvSource, path: str) -> list[str]: ...


class ProfileStates(Protocol):
    """Profiles and their facts, for evaluating without a report store."""

    def profile_ids(self, database_id: str) -> Iterable[str]: ...

    def profile(self, profile_id: str) -> ProfileState: ...

    def facts(self, profile_id: str) -> ProfileFacts: ...


class MembersEngine(Protocol):
    """Evaluates a query whose external rules are lists, given its segment rules' member sets."""

    def members(
        self, query: SegmentQuery, now: datetime, timezone: str, segments: MemberSets, limit: int | None
    ) -> tuple[str, ...]: ...

    def count(self, query: SegmentQuery, now: datetime, timezone: str, segments: MemberSets) -> int: ...


# --- engines -----------------------------------------------------------------------------------


class SqlMembers:
    """The bulk engine: SQL over the report store (`reports.segment_sql`)."""

    def __init__(self, ch: ClickHouse, catch_up: Callable[[], object] = lambda: None) -> None:
        self._ch = ch
        self._catch_up = catch_up  # brings the report store's tables up to the log first

    def members(
        self, query: SegmentQuery, now: datetime, timezone: str, segments: MemberSets, limit: int | None
    ) -> tuple[str, ...]:
        self._catch_up()
        return members_sql(self._ch, query, now, timezone, segments=segments, limit=limit)

    def count(self, query: SegmentQuery, now: datetime, timezone: str, segments: MemberSets) -> int:
        self._catch_up()
        return count_sql(self._ch, query, now, timezone, segments=segments)


class InProcessMembers:
    """The engine without a report store: every profile of the query's databases, one by one."""

    def __init__(self, profiles: ProfileStates) -> None:
        self._profiles = profiles

    def members(
        self, query: SegmentQuery, now: datetime, timezone: str, segments: MemberSets, limit: int | None
    ) -> tuple[str, ...]:
        databases = dict.fromkeys(source.database_id for source in query.sources)
        states = (
            self._profiles.profile(profile_id)
            for database_id in databases
            for profile_id in self._profiles.profile_ids(database_id)
        )
        found = evaluate_members(query, states, self._facts_with(segments), now, timezone)
        return found if limit is None else found[:limit]

    def count(self, query: SegmentQuery, now: datetime, timezone: str, segments: MemberSets) -> int:
        return len(self.members(query, now, timezone, segments, None))

    def _facts_with(self, segments: MemberSets) -> Callable[[str], ProfileFacts]:
        """The port's facts, with the referenced segments' memberships as resolved for this evaluation."""
        named = frozenset(segments)

        def facts_of(profile_id: str) -> ProfileFacts:
            facts = self._profiles.facts(profile_id)
            held = frozenset(s for s, member_ids in segments.items() if profile_id in member_ids)
            return replace(facts, segments=(facts.segments - named) | held)

        return facts_of


# --- the service -------------------------------------------------------------------------------


class SegmentMembers:
    """A query's members, count and sample now, its segment and external rules resolved first."""

    def __init__(self, catalog: SegmentCatalog, engine: MembersEngine, external: ExternalValues) -> None:
        self._catalog = catalog
        self._engine = engine
        self._external = external

    def members(self, query: SegmentQuery, now: datetime, timezone: str) -> tuple[str, ...]:
        """The ids of the query's members at `now`, limits applied, in profile id order."""
        resolved, segments = self._resolve(query, now, ())
        return self._engine.members(resolved, now, timezone, segments, None)

    def count(self, query: SegmentQuery, now: datetime, timezone: str) -> int:
        """How many members the query has at `now`."""
        resolved, segments = self._resolve(query, now, ())
        return self._engine.count(resolved, now, timezone, segments)

    def sample(self, query: SegmentQuery, now: datetime, timezone: str, limit: int) -> list[str]:
        """The first `limit` members by profile id (a preview)."""
        resolved, segments = self._resolve(query, now, ())
        return list(self._engine.members(resolved, now, timezone, segments, limit))

    def of_segment(self, segment_id: str, now: datetime) -> tuple[str, ...]:
        """A stored segment's members at `now` (the funnel's segments port); NotFound for an unknown one."""
        return tuple(sorted(self._segment_members(segment_id, now, ())))

    # -- resolving

    def _resolve(
        self, query: SegmentQuery, now: datetime, chain: tuple[str, ...]
    ) -> tuple[SegmentQuery, dict[str, Collection[str]]]:
        segments = {
            segment_id: self._segment_members(segment_id, now, chain)
            for segment_id in sorted(query.segment_ids())
        }
        return self._with_lists(query), segments

    def _segment_members(self, segment_id: str, now: datetime, chain: tuple[str, ...]) -> Collection[str]:
        if segment_id in chain:
            cycle = " → ".join((*chain, segment_id))
            raise RuleViolated(f"segments refer to each other in a cycle ({cycle})", "segment_id")
        kind, query, timezone = self._catalog.segment(segment_id)
        if kind == "static":
            return frozenset(self._catalog.static_members(segment_id))
        resolved, segments = self._resolve(query, now, (*chain, segment_id))
        return frozenset(self._engine.members(resolved, now, timezone, segments, None))

    def _with_lists(self, query: SegmentQuery) -> SegmentQuery:
        """The query with every fetched external rule replaced by a list rule of its values."""
        sources = tuple(
            self._source_with_lists(source, f"query.sources.{index}")
            for index, source in enumerate(query.sources)
        )
        return query.model_copy(update={"sources": sources})

    def _source_with_lists(self, source: Source, path: str) -> Source:
        rules = tuple(self._listed(rule, f"{path}.rules.{i}") for i, rule in enumerate(source.rules))
        groups = tuple(
            group.model_copy(
                update={
                    "rules": tuple(
                        self._listed(rule, f"{path}.groups.{g}.rules.{i}")
                        for i, rule in enumerate(group.rules)
                    )
                }
            )
            for g, group in enumerate(source.groups)
        )
        return source.model_copy(update={"rules": rules, "groups": groups})

    def _listed(self, rule: AnyRule, path: str) -> AnyRule:
        if not isinstance(rule, ExternalRule) or isinstance(rule.source, ListSource):
            return rule
        at = f"{path}.source"
        if isinstance(rule.source, PostUrlSource):
            raw = self._external.post_url(rule.source, at)
        else:
            raw = self._external.csv(rule.source, at)
        values = tuple(_coerced(rule, raw, at))
        return rule.model_copy(update={"source": ListSource(values=values)})


class FetchedSets:
    """`ExternalValues` over the POST URL fetcher and the uploaded CSV files."""

    def __init__(
        self,
        post: Callable[[PostUrlSource, str], list[str]],
        column: Callable[[str, int, bool, str], list[str]],
    ) -> None:
        self._post = post
        self._column = column

    def post_url(self, source: PostUrlSource, path: str) -> list[str]:
        return self._post(source, path)

    def csv(self, source: CsvSource, path: str) -> list[str]:
        return self._column(source.file_id, source.column, source.header, path)


def _coerced(rule: ExternalRule, raw: Iterable[str], path: str) -> Iterator[str | int | float]:
    """The fetched values in the form a pasted list's take, each once; values the field cannot hold
    are skipped."""
    if rule.type is None:
        raise ValueError("the rule has no field type: check the query with segments.check_query")
    definition = FieldDefinition(name=rule.field, type=rule.type)
    seen: set[str | int | float] = set()
    for value in raw:
        try:
            one = list_item(definition, value, path)
        except ValidationFailed:
            continue
        if isinstance(one, str | int | float) and one not in seen:
            seen.add(one)
            yield one
