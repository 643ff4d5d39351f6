"""Stop lists (suppression lists): the aggregate, the send-time check and the rules that feed them.

A stop list holds email addresses, email domains and phones that must not
receive messages. It filters at send time, not at import, and it is not an
unsubscribe: changing a subscription's status never touches it.

Kinds (guide, "Стоп-списки"):
- `platform_invalid` (`PLATFORM_INVALID_LIST_ID`): every address that hard-bounced, in all accounts;
- `platform_blacklist` (`PLATFORM_BLACKLIST_ID`): addresses and domains the platform admin blocks;
- `account_global` (`ACCOUNT_GLOBAL_LIST_ID`, "Global suppress list"): always applies, never attached;
- `custom`: name, description, tags; attached to profile databases and to templates.

Send-time order (`check`): platform invalid, platform blacklist, account global,
the list attached to the profile's database (email channel only, and only for
that database's profiles), the list attached to the template.

Rules that feed the lists (`hard_bounce_entry`, `global_unsubscribe_entry`,
`template_unsubscribe_entry`):
- a hard bounce adds the address to the platform invalid list; setting the
  subscription back to subscribed does not help until the entry is removed;
- the `{globalunsubscribe}` link adds the contact to the account global list;
- an unsubscribe made through a template whose options attach a list and tick
  "add unsubscribers to the attached stop list" adds the contact to that list;
- a complaint makes the subscription `complainer` (the subscription's rule, not
  ours); it adds no stop-list entry, since the complainer status already stops
  sends and an entry would outlive a later, deliberate re-subscription;
- re-subscribing never lifts an entry: only removing it (UI or API) does.

Decisions where the guide is silent:
- Phones are entries too (SMS and phone-addressed messengers, `PHONE_CHANNELS`);
  push tokens are never listed, so push sends are never stopped here.
- An item is read as an email if it has `@` after its first character, as a
  phone if it is only digits, `+`, spaces, brackets and dashes, else as a domain.
- The built-in lists exist from the start: the first command on an empty
  built-in stream records its `StopListCreated` first, so a hard bounce needs
  no bootstrap. `CreateStopList` is for custom lists; built-ins cannot be deleted.
- The platform invalid list holds email addresses only (the guide's "список невалидных email").
- Re-adding a present item, removing an absent one, clearing an empty list
  and an update that changes nothing emit no events.
- Deleting a custom list detaches it from every database and template (the index forgets it).
- A domain entry matches addresses at exactly that domain, not its subdomains
  (listing `mail.ru` does not stop `user@inbox.mail.ru`).
- The manual check reports exact membership: an address whose domain is listed
  is "new", since removing the address would not unblock it.
- Entries also record the reason `scenario`, for the guide's stop-list scenario node.
- Lists are one per deployment's account: the built-in ids are constants.
- Entries are matched by their name (`StopListItem.digest`), given by the decider's `EntryNamer`
  (the application's is a keyed digest, `LogNames.entry_digest`), not by their value: an entry whose
  address was erased reads as a stand-in but still blocks, is still not added twice and can still
  be removed by its address (see `infra/sealed_entries.py`).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from herald.domain.contacts import email_domain, email_key, normalize_domain, normalize_email, normalize_phone
from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, DomainError, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry

PLATFORM_INVALID_LIST_ID = "platform-invalid"
PLATFORM_BLACKLIST_ID = "platform-blacklist"
ACCOUNT_GLOBAL_LIST_ID = "global"

BULK_CHECK_LIMIT = 500
NAME_MAX_LENGTH = 255
EMAIL_CHANNEL = "email"
PHONE_CHANNELS = frozenset({"sms", "viber", "whatsapp"})


class StopListKind(StrEnum):
    PLATFORM_INVALID = "platform_invalid"
    PLATFORM_BLACKLIST = "platform_blacklist"
    ACCOUNT_GLOBAL = "account_global"
    CUSTOM = "custom"


class EntryKind(StrEnum):
    EMAIL = "email"
    DOMAIN = "domain"
    PHONE = "phone"


class EntryReason(StrEnum):
    MANUAL = "manual"
    IMPORT = "import"
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    GLOBAL_UNSUBSCRIBE_LINK = "global_unsubscribe_link"
    TEMPLATE_UNSUBSCRIBE = "template_unsubscribe"
    API = "api"
    SCENARIO = "scenario"


_BUILT_IN = {
    PLATFORM_INVALID_LIST_ID: (StopListKind.PLATFORM_INVALID, "Platform invalid addresses"),
    PLATFORM_BLACKLIST_ID: (StopListKind.PLATFORM_BLACKLIST, "Platform blacklist"),
    ACCOUNT_GLOBAL_LIST_ID: (StopListKind.ACCOUNT_GLOBAL, "Global suppress list"),
}
BUILT_IN_LIST_IDS = tuple(_BUILT_IN)


def stop_list_stream(list_id: str) -> str:
    """The stream of one stop list."""
    return f"stoplist-{list_id}"


def is_built_in(list_id: str) -> bool:
    """Whether `list_id` names a platform list or the account global list."""
    return list_id in _BUILT_IN


# --- items -----------------------------------------------------------------


EntryKey = tuple[EntryKind, str]


class StopListItem(BaseModel):
    """One normalised address, domain or phone, and the name it is matched by (see `EntryNamer`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: EntryKind
    value: str
    digest: str = ""

    @property
    def match_key(self) -> str:
        """The value as matched: emails case-insensitively, the rest as normalised."""
        return email_key(self.value) if self.kind is EntryKind.EMAIL else self.value

    @property
    def key(self) -> EntryKey:
        """What the item is matched by: its name once named, else its match key."""
        return (self.kind, self.digest or self.match_key)

    def named(self, namer: EntryNamer) -> StopListItem:
        """This item with its name (`digest`) given by `namer`, if it has none yet."""
        if self.digest:
            return self
        return StopListItem(kind=self.kind, value=self.value, digest=namer(self.kind, self.match_key))


# How an entry is named: a keyed digest of its kind and match key (`LogNames.entry_digest`), so an
# entry whose address was erased (its value sealed under a destroyed key) still matches it.
EntryNamer = Callable[[EntryKind, str], str]


def erased_value(digest: str) -> str:
    """What an entry whose holder was erased reads as: its name shortened, nothing personal."""
    return "erased-" + digest[:16]


def plain_names(kind: EntryKind, key: str) -> str:
    """Names an entry by its match key itself: for the domain's own tests, where no key exists."""
    return key


_PERSONAL_KINDS = (EntryKind.EMAIL, EntryKind.PHONE)  # a domain names no one
_PHONE_LIKE = re.compile(r"^\+?[\d\s()\-]+$")
_SEPARATORS = re.compile(r"[,\s]+")


def parse_item(text: str, path: str = "item") -> StopListItem:
    """The item `text` denotes (email, phone or domain), normalised; refused if malformed."""
    value = text.strip()
    if not value:
        raise ValidationFailed("give an email address, a domain or a phone", path)
    if "@" in value[1:]:
        return StopListItem(kind=EntryKind.EMAIL, value=normalize_email(value, path))
    if _PHONE_LIKE.match(value):
        return StopListItem(kind=EntryKind.PHONE, value=normalize_phone(value, path))
    return StopListItem(kind=EntryKind.DOMAIN, value=normalize_domain(value, path))


def parse_items(text: str) -> list[str]:
    """The items of a manual check: split on commas, spaces and newlines, blanks dropped."""
    return [part for part in _SEPARATORS.split(text) if part]


def _parse_all(items: Sequence[str], namer: EntryNamer) -> dict[EntryKey, tuple[int, StopListItem]]:
    """Every item, named, by key with its first position; the first malformed one is refused at
    `items.<i>`."""
    if not items:
        raise ValidationFailed("give at least one email address, domain or phone", "items")
    parsed: dict[EntryKey, tuple[int, StopListItem]] = {}
    for position, text in enumerate(items):
        item = parse_item(text, f"items.{position}").named(namer)
        parsed.setdefault(item.key, (position, item))
    return parsed


# --- entries: a persistent set -----------------------------------------------


@dataclass(frozen=True, slots=True)
class StopListEntry:
    """An item in a list, with why and when it was added."""

    item: StopListItem
    reason: EntryReason
    added_at: datetime


@dataclass(eq=False, slots=True)
class _Lineage:
    history: dict[EntryKey, list[tuple[int, StopListEntry | None]]] = field(default_factory=dict)
    tip: int = 0


class EntrySet:
    """A list's entries as an immutable value.

    The platform invalid list gains one entry per hard bounce, so copying the
    set on every event would make a fold quadratic. Versions of one set share
    a history of (version, entry or removal) per key; each version reads the
    history up to its own number. Extending the newest version appends in
    O(changes); extending an older one copies first, so every version keeps
    its value. Folds are single-threaded, which this relies on.
    """

    __slots__ = ("_lineage", "_size", "_version")

    def __init__(self) -> None:
        self._lineage = _Lineage()
        self._version = 0
        self._size = 0

    def get(self, key: EntryKey) -> StopListEntry | None:
        """The entry for `key` in this version, if any."""
        records = self._lineage.history.get(key)
        if not records:
            return None
        if records[-1][0] <= self._version:
            return records[-1][1]
        at = bisect_right(records, self._version, key=lambda record: record[0])
        return records[at - 1][1] if at else None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and self.get(key) is not None

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[StopListEntry]:
        for key in list(self._lineage.history):
            entry = self.get(key)
            if entry is not None:
                yield entry

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EntrySet):
            return NotImplemented
        return len(self) == len(other) and all(other.get(entry.item.key) == entry for entry in self)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EntrySet({[entry.item.value for entry in self]!r})"

    def with_entries(self, entries: Iterable[StopListEntry]) -> EntrySet:
        """This set plus `entries`; keys already present keep their first entry."""
        return self._changed([(entry.item.key, entry) for entry in entries])

    def without(self, keys: Iterable[EntryKey]) -> EntrySet:
        """This set minus `keys`."""
        return self._changed([(key, None) for key in keys])

    def _changed(self, changes: list[tuple[EntryKey, StopListEntry | None]]) -> EntrySet:
        base = self if self._version == self._lineage.tip else self._copy()
        version = base._version + 1
        size = base._size
        history = base._lineage.history
        # a key changed earlier in this same change is judged by that change,
        # since `base` cannot see records of the version being written
        touched: dict[EntryKey, StopListEntry | None] = {}
        for key, entry in changes:
            present = touched[key] is not None if key in touched else key in base
            if present == (entry is None):
                touched[key] = entry
                history.setdefault(key, []).append((version, entry))
                size += 1 if entry is not None else -1
        base._lineage.tip = version
        result = EntrySet.__new__(EntrySet)
        result._lineage, result._version, result._size = base._lineage, version, size
        return result

    def _copy(self) -> EntrySet:
        copy = EntrySet()
        copy._lineage.history = {entry.item.key: [(0, entry)] for entry in self}
        copy._size = self._size
        return copy


# --- events ------------------------------------------------------------------


@registry.register("StopListCreated")
class StopListCreated(Event):
    list_id: str
    kind: StopListKind
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    at: datetime


@registry.register("StopListUpdated")
class StopListUpdated(Event):
    list_id: str
    name: str
    description: str
    tags: tuple[str, ...]
    at: datetime


@registry.register("StopListEntriesAdded")
class StopListEntriesAdded(Event):
    list_id: str
    items: tuple[StopListItem, ...]
    reason: EntryReason
    at: datetime


@registry.register("StopListEntriesRemoved")
class StopListEntriesRemoved(Event):
    list_id: str
    items: tuple[StopListItem, ...]
    at: datetime


@registry.register("StopListEntriesErased")
class StopListEntriesErased(Event):
    """Entries whose holder was erased: they stay and keep matching, their values read as erased."""

    list_id: str
    items: tuple[StopListItem, ...]  # each named, its value `erased_value(digest)`
    at: datetime


@registry.register("StopListCleared")
class StopListCleared(Event):
    list_id: str
    entries_removed: int
    at: datetime


@registry.register("StopListDeleted")
class StopListDeleted(Event):
    list_id: str
    at: datetime


# --- state -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StopListState:
    list_id: str = ""
    kind: StopListKind | None = None
    name: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    deleted: bool = False
    entries: EntrySet = field(default_factory=EntrySet)
    name_entry: EntryNamer = field(default=plain_names, compare=False, repr=False)

    @property
    def exists(self) -> bool:
        return self.kind is not None and not self.deleted

    def has_entry(self, list_id: str, item: StopListItem) -> bool:
        """Whether this list (if it is `list_id`) holds exactly `item`."""
        return list_id == self.list_id and item.key in self.entries


def evolve(state: StopListState, event: Event) -> StopListState:
    """The list after `event`."""
    if isinstance(event, StopListCreated):
        return StopListState(
            event.list_id, event.kind, event.name, event.description, event.tags, name_entry=state.name_entry
        )
    if isinstance(event, StopListUpdated):
        return replace(state, name=event.name, description=event.description, tags=event.tags)
    if isinstance(event, StopListEntriesAdded):
        added = (StopListEntry(item.named(state.name_entry), event.reason, event.at) for item in event.items)
        return replace(state, entries=state.entries.with_entries(added))
    if isinstance(event, StopListEntriesRemoved):
        removed = (item.named(state.name_entry).key for item in event.items)
        return replace(state, entries=state.entries.without(removed))
    if isinstance(event, StopListEntriesErased):
        erased = [
            StopListEntry(item, kept.reason, kept.added_at)
            for item in event.items
            if (kept := state.entries.get(item.key)) is not None
        ]
        return replace(state, entries=state.entries.without(e.item.key for e in erased).with_entries(erased))
    if isinstance(event, StopListCleared):
        return replace(state, entries=EntrySet())
    if isinstance(event, StopListDeleted):
        return replace(state, deleted=True)
    return state


# --- commands ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateStopList:
    """Create a custom list (the built-in lists always exist)."""

    list_id: str
    name: str
    at: datetime
    description: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UpdateStopList:
    """Change a list's name, description or tags; `None` keeps the current value."""

    list_id: str
    at: datetime
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class AddStopListEntries:
    list_id: str
    items: tuple[str, ...]
    reason: EntryReason
    at: datetime


@dataclass(frozen=True, slots=True)
class RemoveStopListEntries:
    list_id: str
    items: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class EraseStopListEntries:
    """Make the entries named `digests` read as erased (their holder was erased); they keep matching."""

    list_id: str
    digests: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class ClearStopList:
    list_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DeleteStopList:
    list_id: str
    at: datetime


StopListCommand = (
    CreateStopList
    | UpdateStopList
    | AddStopListEntries
    | RemoveStopListEntries
    | EraseStopListEntries
    | ClearStopList
    | DeleteStopList
)


def decide(command: StopListCommand, state: StopListState) -> list[Event]:
    """The events `command` causes on the list in `state`; a built-in list is created on first use."""
    prelude: list[Event] = []
    if state.kind is None and is_built_in(command.list_id) and not isinstance(command, CreateStopList):
        kind, name = _BUILT_IN[command.list_id]
        prelude.append(StopListCreated(list_id=command.list_id, kind=kind, name=name, at=command.at))
        state = evolve(state, prelude[0])
    events = _decide(command, state)
    return prelude + events if events else []


def _decide(command: StopListCommand, state: StopListState) -> list[Event]:
    if isinstance(command, CreateStopList):
        return _create(command, state)
    if not state.exists:
        gone = "was deleted" if state.deleted else "does not exist"
        raise NotFound(f"the stop list {command.list_id!r} {gone}", "list_id")
    if isinstance(command, UpdateStopList):
        return _update(command, state)
    if isinstance(command, AddStopListEntries):
        return _add(command, state)
    if isinstance(command, RemoveStopListEntries):
        listed = (state.entries.get(key) for key in _parse_all(command.items, state.name_entry))
        present = [entry.item for entry in listed if entry is not None]  # named as listed
        return (
            [StopListEntriesRemoved(list_id=state.list_id, items=tuple(present), at=command.at)]
            if present
            else []
        )
    if isinstance(command, EraseStopListEntries):
        return _erase(command, state)
    if isinstance(command, ClearStopList):
        count = len(state.entries)
        return [StopListCleared(list_id=state.list_id, entries_removed=count, at=command.at)] if count else []
    if is_built_in(state.list_id):
        raise RuleViolated("the platform lists and the account global list cannot be deleted", "list_id")
    return [StopListDeleted(list_id=state.list_id, at=command.at)]


def _create(command: CreateStopList, state: StopListState) -> list[Event]:
    if is_built_in(command.list_id):
        raise AlreadyExists(f"{command.list_id!r} is a built-in list and always exists", "list_id")
    if not command.list_id.strip():
        raise ValidationFailed("a stop list needs an id", "list_id")
    if state.kind is not None:
        raise AlreadyExists(f"the stop list id {command.list_id!r} is taken", "list_id")
    return [
        StopListCreated(
            list_id=command.list_id,
            kind=StopListKind.CUSTOM,
            name=_valid_name(command.name),
            description=command.description.strip(),
            tags=_valid_tags(command.tags),
            at=command.at,
        )
    ]


def _update(command: UpdateStopList, state: StopListState) -> list[Event]:
    name = state.name if command.name is None else _valid_name(command.name)
    description = state.description if command.description is None else command.description.strip()
    tags = state.tags if command.tags is None else _valid_tags(command.tags)
    if (name, description, tags) == (state.name, state.description, state.tags):
        return []
    return [
        StopListUpdated(list_id=state.list_id, name=name, description=description, tags=tags, at=command.at)
    ]


def _add(command: AddStopListEntries, state: StopListState) -> list[Event]:
    items = _parse_all(command.items, state.name_entry).values()
    if state.kind is StopListKind.PLATFORM_INVALID:
        for position, item in items:
            if item.kind is not EntryKind.EMAIL:
                raise RuleViolated(
                    "the platform invalid list holds email addresses only", f"items.{position}"
                )
    new = [item for _, item in items if item.key not in state.entries]
    if not new:
        return []
    return [
        StopListEntriesAdded(list_id=state.list_id, items=tuple(new), reason=command.reason, at=command.at)
    ]


def _erase(command: EraseStopListEntries, state: StopListState) -> list[Event]:
    """Every listed entry of the digests, whatever it reads as now (once the entry's key is gone it
    reads as erased already; the read models learn it from this event)."""
    held = [
        StopListItem(kind=kind, value=erased_value(digest), digest=digest)
        for digest in command.digests
        for kind in _PERSONAL_KINDS
        if (kind, digest) in state.entries
    ]
    return [StopListEntriesErased(list_id=state.list_id, items=tuple(held), at=command.at)] if held else []


def _valid_name(name: str) -> str:
    text = name.strip()
    if not text:
        raise ValidationFailed("a stop list needs a name", "name")
    if len(text) > NAME_MAX_LENGTH:
        raise ValidationFailed(f"the name is longer than {NAME_MAX_LENGTH} characters", "name")
    return text


def _valid_tags(tags: Sequence[str]) -> tuple[str, ...]:
    kept: dict[str, None] = {}
    for position, tag in enumerate(tags):
        text = tag.strip()
        if not text:
            raise ValidationFailed("a tag cannot be blank", f"tags.{position}")
        kept.setdefault(text, None)
    return tuple(kept)


def stop_list_decider_for(namer: EntryNamer) -> Decider[StopListCommand, StopListState]:
    """The stop-list decider naming entries with `namer` (the application's: `LogNames.entry_digest`)."""
    return Decider(StopListState(name_entry=namer), decide, evolve)


stop_list_decider = stop_list_decider_for(plain_names)  # names entries by their plain keys


def ensure_attachable(state: StopListState, list_id: str, path: str = "stop_list_id") -> None:
    """Refuse attaching list `list_id` (folded as `state`) unless it is an existing custom list."""
    if is_built_in(list_id):
        raise RuleViolated("only custom stop lists can be attached; the built-in lists always apply", path)
    if not state.exists:
        raise NotFound(f"there is no stop list {list_id!r}", path)
    if state.kind is not StopListKind.CUSTOM:
        raise RuleViolated("only custom stop lists can be attached; the built-in lists always apply", path)


# --- rules the processors apply ----------------------------------------------


def hard_bounce_entry(email: str, at: datetime) -> AddStopListEntries:
    """A hard-bounced address goes to the platform invalid list."""
    return AddStopListEntries(PLATFORM_INVALID_LIST_ID, (email,), EntryReason.HARD_BOUNCE, at)


def global_unsubscribe_entry(contact: str, at: datetime) -> AddStopListEntries:
    """Following `{globalunsubscribe}` puts the contact on the account global list."""
    return AddStopListEntries(ACCOUNT_GLOBAL_LIST_ID, (contact,), EntryReason.GLOBAL_UNSUBSCRIBE_LINK, at)


def template_unsubscribe_entry(
    contact: str, at: datetime, *, stop_list_id: str | None, add_unsubscribed: bool
) -> AddStopListEntries | None:
    """An unsubscribe via a template that sinks unsubscribers into its attached list, if it does."""
    if stop_list_id is None or not add_unsubscribed:
        return None
    return AddStopListEntries(stop_list_id, (contact,), EntryReason.TEMPLATE_UNSUBSCRIBE, at)


# --- the send-time check -----------------------------------------------------


class EntryLookup(Protocol):
    def has_entry(self, list_id: str, item: StopListItem) -> bool:
        """Whether the list `list_id` holds exactly `item`."""
        ...


class StopListLookup(EntryLookup, Protocol):
    def database_list(self, database_id: str) -> str | None:
        """The list attached to the database, if any."""
        ...

    def template_list(self, template_id: str) -> str | None:
        """The list attached to the template, if any."""
        ...


class StopListLevel(StrEnum):
    PLATFORM = "platform"
    ACCOUNT = "account"
    DATABASE = "database"
    TEMPLATE = "template"


@dataclass(frozen=True, slots=True)
class StopListHit:
    """Why a send is stopped: the level, the list and the entry that matched."""

    level: StopListLevel
    list_id: str
    item: StopListItem


def check(
    index: StopListLookup, *, channel: str, contact: str, database_id: str, template_id: str | None = None
) -> StopListHit | None:
    """The first stop list that blocks sending to `contact` on `channel`, in the guide's order."""
    candidates = _contact_items(channel, contact)
    if not candidates:
        return None
    levels: list[tuple[StopListLevel, str | None]] = [
        (StopListLevel.PLATFORM, PLATFORM_INVALID_LIST_ID),
        (StopListLevel.PLATFORM, PLATFORM_BLACKLIST_ID),
        (StopListLevel.ACCOUNT, ACCOUNT_GLOBAL_LIST_ID),
    ]
    if channel == EMAIL_CHANNEL:
        levels.append((StopListLevel.DATABASE, index.database_list(database_id)))
    if template_id is not None:
        levels.append((StopListLevel.TEMPLATE, index.template_list(template_id)))
    for level, list_id in levels:
        if list_id is None:
            continue
        for item in candidates:
            if index.has_entry(list_id, item):
                return StopListHit(level, list_id, item)
    return None


def _contact_items(channel: str, contact: str) -> list[StopListItem]:
    """What a subscription's contact can be listed as: the address and its domain, or the phone."""
    value = contact.strip()
    if channel == EMAIL_CHANNEL and "@" in value:
        return [
            StopListItem(kind=EntryKind.EMAIL, value=value),
            StopListItem(kind=EntryKind.DOMAIN, value=email_domain(value).lower()),
        ]
    if channel in PHONE_CHANNELS:
        with suppress(ValidationFailed):  # a malformed stored phone can still be listed verbatim
            value = normalize_phone(value)
        return [StopListItem(kind=EntryKind.PHONE, value=value)]
    return []


@dataclass(frozen=True, slots=True)
class InvalidItem:
    position: int
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class BulkCheckResult:
    """The manual check's tabs: "Существующие", "Новые", and the items that are not valid."""

    existing: tuple[StopListItem, ...]
    new: tuple[StopListItem, ...]
    invalid: tuple[InvalidItem, ...]


def bulk_check(lookup: EntryLookup, list_id: str, items: Sequence[str]) -> BulkCheckResult:
    """Sort up to 500 items into those in the list, those not in it, and malformed ones, in input order."""
    if len(items) > BULK_CHECK_LIMIT:
        raise ValidationFailed(
            f"check at most {BULK_CHECK_LIMIT} items at once; {len(items)} were given", "items"
        )
    existing: list[StopListItem] = []
    new: list[StopListItem] = []
    invalid: list[InvalidItem] = []
    seen: set[EntryKey] = set()
    for position, text in enumerate(items):
        try:
            item = parse_item(text, f"items.{position}")
        except DomainError as error:
            invalid.append(InvalidItem(position, text, error.reason))
            continue
        if item.key in seen:
            continue
        seen.add(item.key)
        (existing if lookup.has_entry(list_id, item) else new).append(item)
    return BulkCheckResult(tuple(existing), tuple(new), tuple(invalid))


class StopListIndex:
    """Every list's entries and every attachment, for `check` and `bulk_check`.

    A projection owns one and feeds it events with `apply` and attachments
    with `attach_database`/`attach_template`; readers only ask. It changes in
    place because it follows the whole log: copying it per event would make a
    replay quadratic in the number of hard bounces.
    """

    def __init__(self) -> None:
        self._entries: dict[str, set[EntryKey]] = {}
        self._databases: dict[str, str] = {}
        self._templates: dict[str, str] = {}

    def has_entry(self, list_id: str, item: StopListItem) -> bool:
        entries = self._entries.get(list_id)
        return entries is not None and item.key in entries

    def database_list(self, database_id: str) -> str | None:
        return self._databases.get(database_id)

    def template_list(self, template_id: str) -> str | None:
        return self._templates.get(template_id)

    def size(self, list_id: str) -> int:
        """How many entries the list holds (the tile's "Количество")."""
        return len(self._entries.get(list_id, ()))

    def apply(self, event: Event) -> None:
        """Follow a stop-list event; other events are ignored."""
        if isinstance(event, StopListCreated | StopListCleared):
            self._entries[event.list_id] = set()
        elif isinstance(event, StopListEntriesAdded):
            self._entries.setdefault(event.list_id, set()).update(item.key for item in event.items)
        elif isinstance(event, StopListEntriesRemoved):
            self._entries.get(event.list_id, set()).difference_update(item.key for item in event.items)
        elif isinstance(event, StopListDeleted):
            self._entries.pop(event.list_id, None)
            for attachments in (self._databases, self._templates):
                for target in [t for t, list_id in attachments.items() if list_id == event.list_id]:
                    del attachments[target]

    def attach_database(self, database_id: str, list_id: str | None) -> None:
        """Attach `list_id` to the database (`None` detaches)."""
        _attach(self._databases, database_id, list_id)

    def attach_template(self, template_id: str, list_id: str | None) -> None:
        """Attach `list_id` to the template (`None` detaches)."""
        _attach(self._templates, template_id, list_id)


def _attach(attachments: dict[str, str], target: str, list_id: str | None) -> None:
    if list_id is None:
        attachments.pop(target, None)
    else:
        attachments[target] = list_id
