"""Erasing a profile (GDPR): its events stay, unreadable; every copy of its data elsewhere goes.

`erase(profile_id)`:
1. deletes the profile (its unique values are released, as any delete does) and records
   `ProfileErased` on its stream, naming the stop-list entries of its addresses and phones;
2. destroys its key (`ProfileKeys.destroy`), those of the anonymous visitors linked to it and those
   of its addresses' stop-list entries (`infra/sealed_entries.py`): from then on its sealed events
   and those entries read as erased, in this process, in a replay, and in any copy of the log, while
   the entries still match (a re-imported or re-subscribed erased address stays suppressed);
3. scrubs what is not the log: the report store's rows (the profile's snapshot goes; its
   subscription changes lose their contact, its messages' events their bounce text (which often
   quotes the address) and clicked links' URLs (which may carry its values); message, goal and
   creation rows stay, so the reports keep its anonymous counts; embedded, once the sink has
   caught up, the tables are rewritten and the old ones dropped at once; on a server by
   mutations whose old parts the server drops later), the error reports of imports and the CSV and JSON-lines
   exports (lines holding one of its values go; XLSX exports of its database, compressed and so
   unsearchable, are deleted), and segment files. The read models are scrubbed by the erasure
   projection when it reads `ProfileErased`. Its goal rows keep their counts, their referrer blanked.

`erase_visitor(anonymous_id)` erases an anonymous visitor no `identify` linked to a profile
(`domain/visitors.py`): it records `VisitorErased`, destroys the visitor's key (its tracked events'
properties and context read as erased) and blanks the referrer of its goal rows in the reports. No
read model holds a visitor's tracked data, and its id stays, as a profile's id does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from herald.domain import profiles, visitors
from herald.domain.tracking import anonymous_stream
from herald.infra.clickhouse import ChdbClickHouse, ClickHouse
from herald.infra.log_names import LogNames
from herald.infra.profile_keys import ProfileKeys
from herald.infra.sealed_entries import entry_names, entry_owner
from herald.infra.sealed_store import anonymous_key
from herald.services.aggregates import CommandContext, Outcome
from herald.services.profiles import ProfileService

_TEXT_FILES = (".csv", ".jsonl", ".rows")
# Each report table holding personal data, and the columns its rows of an erased profile lose
# (none: those rows go). Message, goal and creation rows otherwise stay: the reports keep the counts.
_REPORT_SCRUBS: dict[str, tuple[str, ...]] = {
    "profile_snapshots": (),
    "subscription_changes": ("contact",),
    # a bounce's text often quotes the address; a clicked link's URL may carry the profile's values
    "message_events": ("bounce_text", "link_url"),
    "goal_events": ("referrer",),  # the page a goal was reached from: its URL may carry them too
}
# An anonymous visitor's rows: its goals and pixel visits, counted still, their referrer blanked.
_VISITOR_SCRUBS: dict[str, tuple[str, ...]] = {"goal_events": ("referrer",)}
_BLANK = "''"


def _theirs(owner: str) -> str:
    """The rows of the erased profile or visitor (`owner` is the column naming it)."""
    return owner + " = {erased:String}"


def _holding(table: str, columns: tuple[str, ...], owner: str) -> str:
    """Counts the rows a scrub would change."""
    filled = f" AND ({' OR '.join(f'{c} != {_BLANK}' for c in columns)})" if columns else ""
    return f"SELECT count() AS n FROM {table} WHERE {_theirs(owner)}{filled}"


def _kept(table: str, columns: tuple[str, ...], owner: str) -> str:
    """The table's rows as they stay (embedded: the table is rewritten from it)."""
    if not columns:
        return f"SELECT * FROM {table} WHERE NOT ({_theirs(owner)})"
    blanked = ", ".join(f"if({_theirs(owner)}, {_BLANK}, {c}) AS {c}" for c in columns)
    return f"SELECT * REPLACE ({blanked}) FROM {table}"


def _mutation(table: str, columns: tuple[str, ...], owner: str) -> str:
    """The scrub as a server's mutation."""
    if not columns:
        return f"ALTER TABLE {table} DELETE WHERE {_theirs(owner)}"
    sets = ", ".join(f"{c} = {_BLANK}" for c in columns)
    return f"ALTER TABLE {table} UPDATE {sets} WHERE {_theirs(owner)}"


class ErasureService:
    def __init__(
        self,
        profiles_service: ProfileService,
        keys: ProfileKeys,
        names: LogNames,
        clickhouse: ClickHouse | None,
        file_folders: Iterable[Path],
        erase_entries: Callable[[Sequence[str], datetime, CommandContext], None],
        report_catch_up: Callable[[], None] = lambda: None,
        anonymous_ids_of: Callable[[str], list[str]] = lambda profile_id: [],
        visitor_links: Callable[[str], dict[str, str]] = lambda anonymous_id: {},
    ) -> None:
        self.erase_entries = erase_entries  # the stop lists' record of the erased entries
        self.anonymous_ids_of = anonymous_ids_of  # the visitors linked to a profile: their keys go too
        self.visitor_links = visitor_links  # database id → profile id a visitor was identified as
        self.profiles = profiles_service
        self.keys = keys
        self.names = names
        self.clickhouse = clickhouse
        self.file_folders = list(file_folders)
        self.report_catch_up = report_catch_up

    def erase(self, profile_id: str, context: CommandContext) -> Outcome:
        state = self.profiles.state(profile_id) if self._exists(profile_id) else None
        values = _personal_values(state) if state is not None else set()
        entries = sorted(entry_names(_contacts(state), self.names)) if state is not None else []
        visitors = self.anonymous_ids_of(profile_id)  # read before the erasure projection drops the links
        if state is not None:
            self.profiles.delete(profile_id, context)
        aggregates = self.profiles.aggregates
        command = profiles.EraseProfile(profile_id, aggregates.clock.now(), tuple(entries))
        outcome = self.profiles.execute(profile_id, command, context)
        self.keys.destroy(profile_id)
        for digest in entries:  # its addresses on stop lists still match, but read as erased
            self.keys.destroy(entry_owner(digest))
        self.erase_entries(entries, command.at, context)
        for visitor in visitors:
            self.keys.destroy(anonymous_key(visitor))
        self.report_catch_up()  # the sink writes the erased state first, so nothing comes after the scrub
        self._scrub_reports(_REPORT_SCRUBS, "profile_id", profile_id)
        self._scrub_files(values)
        return outcome

    def erase_visitor(self, anonymous_id: str, context: CommandContext) -> Outcome:
        """Erase an anonymous visitor never identified as a profile (`domain/visitors.py`): its key
        goes, so its tracked events read as erased; its goal rows in the reports lose their referrer."""
        aggregates = self.profiles.aggregates
        linked = tuple(sorted(self.visitor_links(anonymous_id).values()))
        command = visitors.EraseVisitor(anonymous_id, aggregates.clock.now(), linked)
        outcome = aggregates.execute(
            visitors.visitor_decider, anonymous_stream(anonymous_id), command, context
        )
        self.keys.destroy(anonymous_key(anonymous_id))
        self.report_catch_up()
        self._scrub_reports(_VISITOR_SCRUBS, "anonymous_id", anonymous_id)
        return outcome

    def _exists(self, profile_id: str) -> bool:
        return self.profiles.aggregates.load(
            profiles.profile_decider, profiles.profile_stream(profile_id)
        ).state.exists

    def _scrub_reports(self, scrubs: dict[str, tuple[str, ...]], owner: str, erased: str) -> None:
        if self.clickhouse is None:
            return
        params = {"erased": erased}
        for table, columns in scrubs.items():
            if self.clickhouse.query(_holding(table, columns, owner), params)[0]["n"] == 0:
                continue
            if not isinstance(self.clickhouse, ChdbClickHouse):
                # a server: a mutation rewrites the parts; it drops the old ones after `old_parts_lifetime`
                self.clickhouse.execute(_mutation(table, columns, owner), params)
                continue
            # embedded: the table is rewritten without the data and the old one dropped at once, so no
            # outdated part keeps a copy on disk (the embedded engine does not clean them up by itself)
            self.clickhouse.execute(f"DROP TABLE IF EXISTS {table}_scrub SYNC")
            self.clickhouse.execute(f"CREATE TABLE {table}_scrub AS {table}")
            self.clickhouse.execute(f"INSERT INTO {table}_scrub {_kept(table, columns, owner)}", params)
            self.clickhouse.execute(f"EXCHANGE TABLES {table} AND {table}_scrub")
            self.clickhouse.execute(f"DROP TABLE {table}_scrub SYNC")

    def _scrub_files(self, values: set[str]) -> None:
        needles = [v.encode() for v in values if len(v) >= 3]
        if not needles:
            return
        for path in self._files():
            if path.suffix == ".xlsx":
                path.unlink(missing_ok=True)
            elif path.suffix in _TEXT_FILES or path.parent.name.endswith(".errors"):
                _drop_lines(path, needles)

    def _files(self) -> Iterator[Path]:
        for folder in self.file_folders:
            if folder.is_dir():
                yield from (p for p in folder.rglob("*") if p.is_file())


def _personal_values(state: profiles.ProfileState) -> set[str]:
    values: set[str] = set()
    for value in state.fields.values():
        items = value if isinstance(value, list) else [value]
        values.update(str(v) for v in items if isinstance(v, str | int) and not isinstance(v, bool))
    values.update(s.key.contact for s in state.subscriptions)
    if state.tracked is not None:
        values.update(str(v) for v in (state.tracked.ip, state.tracked.user_agent) if v)
    return values


def _contacts(state: profiles.ProfileState) -> set[str]:
    """The addresses and phones a stop list can hold of the profile: its email, phones and contacts."""
    phones = state.fields.get("phones")
    found = {str(p) for p in (phones if isinstance(phones, list) else [phones]) if p}
    found.update(s.key.contact for s in state.subscriptions)
    if state.fields.get("email"):
        found.add(str(state.fields["email"]))
    return found


def _drop_lines(path: Path, needles: list[bytes]) -> None:
    content = path.read_bytes()
    if not any(n in content for n in needles):
        return
    kept = [line for line in content.splitlines(keepends=True) if not any(n in line for n in needles)]
    part = path.with_suffix(path.suffix + ".scrub")
    part.write_bytes(b"".join(kept))
    part.replace(path)
