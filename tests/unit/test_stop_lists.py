"""Stop lists: the aggregate's commands, the send-time check order, the manual bulk check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from herald.domain.errors import AlreadyExists, DomainError, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.stop_lists import (
    ACCOUNT_GLOBAL_LIST_ID,
    PLATFORM_BLACKLIST_ID,
    PLATFORM_INVALID_LIST_ID,
    AddStopListEntries,
    BulkCheckResult,
    ClearStopList,
    CreateStopList,
    DeleteStopList,
    EntryKind,
    EntryReason,
    EntrySet,
    EraseStopListEntries,
    InvalidItem,
    RemoveStopListEntries,
    StopListCleared,
    StopListCreated,
    StopListDeleted,
    StopListEntriesAdded,
    StopListEntriesErased,
    StopListEntriesRemoved,
    StopListEntry,
    StopListHit,
    StopListIndex,
    StopListItem,
    StopListKind,
    StopListLevel,
    StopListUpdated,
    UpdateStopList,
    bulk_check,
    check,
    ensure_attachable,
    erased_value,
    global_unsubscribe_entry,
    hard_bounce_entry,
    parse_item,
    parse_items,
    plain_names,
    stop_list_decider,
    stop_list_decider_for,
    stop_list_stream,
    template_unsubscribe_entry,
)
from tests.unit.decider_table import then, then_error

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
CUSTOM = "7"


def email(value: str) -> StopListItem:
    return StopListItem(kind=EntryKind.EMAIL, value=value)


def domain(value: str) -> StopListItem:
    return StopListItem(kind=EntryKind.DOMAIN, value=value)


def phone(value: str) -> StopListItem:
    return StopListItem(kind=EntryKind.PHONE, value=value)


def named(*items: StopListItem) -> tuple[StopListItem, ...]:
    """Items as the decider records them: named (here by their match keys, `plain_names`)."""
    return tuple(item.named(plain_names) for item in items)


def created(list_id: str = CUSTOM, **overrides: Any) -> StopListCreated:
    fields: dict[str, Any] = dict(list_id=list_id, kind=StopListKind.CUSTOM, name="VIP only", at=T0)
    return StopListCreated(**(fields | overrides))


def built_in(list_id: str, kind: StopListKind, name: str) -> StopListCreated:
    return StopListCreated(list_id=list_id, kind=kind, name=name, at=T1)


def added(*items: StopListItem, list_id: str = CUSTOM, reason: EntryReason = EntryReason.MANUAL) -> Event:
    return StopListEntriesAdded(list_id=list_id, items=named(*items), reason=reason, at=T1)


def add(*items: str, list_id: str = CUSTOM, reason: EntryReason = EntryReason.MANUAL) -> AddStopListEntries:
    return AddStopListEntries(list_id, items, reason, T1)


GLOBAL_CREATED = built_in(ACCOUNT_GLOBAL_LIST_ID, StopListKind.ACCOUNT_GLOBAL, "Global suppress list")
INVALID_CREATED = built_in(
    PLATFORM_INVALID_LIST_ID, StopListKind.PLATFORM_INVALID, "Platform invalid addresses"
)
BLACKLIST_CREATED = built_in(PLATFORM_BLACKLIST_ID, StopListKind.PLATFORM_BLACKLIST, "Platform blacklist")


# --- commands: given / when / then ------------------------------------------

ACCEPTED: list[tuple[str, list[Event], Any, list[Event]]] = [
    (
        "create a custom list",
        [],
        CreateStopList(
            CUSTOM, " VIP only ", T0, description=" no promos ", tags=("West coast", " West coast")
        ),
        [created(description="no promos", tags=("West coast",))],
    ),
    (
        "update name, description and tags",
        [created()],
        UpdateStopList(CUSTOM, T1, name="Promo opt-outs", description="d", tags=("a",)),
        [StopListUpdated(list_id=CUSTOM, name="Promo opt-outs", description="d", tags=("a",), at=T1)],
    ),
    (
        "update keeps what is not given",
        [created(description="kept", tags=("t",))],
        UpdateStopList(CUSTOM, T1, name="Renamed"),
        [StopListUpdated(list_id=CUSTOM, name="Renamed", description="kept", tags=("t",), at=T1)],
    ),
    ("update that changes nothing", [created()], UpdateStopList(CUSTOM, T1, name="VIP only"), []),
    (
        "add an email, a domain and a phone",
        [created()],
        add("John.Doe@Example.COM", "@gsom.org", "+7 (912) 345-67-89"),
        [added(email("John.Doe@example.com"), domain("gsom.org"), phone("+79123456789"))],
    ),
    (
        "add with a reason",
        [created()],
        add("a@x.io", reason=EntryReason.IMPORT),
        [added(email("a@x.io"), reason=EntryReason.IMPORT)],
    ),
    (
        "items repeated in one command are added once",
        [created()],
        add("a@x.io", "A@X.IO", "x.io", "@X.io"),
        [added(email("a@x.io"), domain("x.io"))],
    ),
    (
        "items already present are skipped",
        [created(), added(email("a@x.io"))],
        add("A@x.io", "b@x.io"),
        [added(email("b@x.io"))],
    ),
    ("re-adding emits nothing", [created(), added(email("a@x.io"))], add("a@X.io"), []),
    (
        "an item removed earlier can be added again",
        [
            created(),
            added(email("a@x.io")),
            StopListEntriesRemoved(list_id=CUSTOM, items=named(email("a@x.io")), at=T1),
        ],
        add("a@x.io"),
        [added(email("a@x.io"))],
    ),
    (
        "remove present items, skip absent ones",
        [created(), added(email("a@x.io"), domain("x.io"))],
        RemoveStopListEntries(CUSTOM, ("A@X.IO", "nobody@x.io", "x.io"), T1),
        [StopListEntriesRemoved(list_id=CUSTOM, items=named(email("a@x.io"), domain("x.io")), at=T1)],
    ),
    (
        "removing what is absent emits nothing",
        [created()],
        RemoveStopListEntries(CUSTOM, ("a@x.io",), T1),
        [],
    ),
    (
        "clear counts what it removed",
        [created(), added(email("a@x.io"), domain("x.io"))],
        ClearStopList(CUSTOM, T1),
        [StopListCleared(list_id=CUSTOM, entries_removed=2, at=T1)],
    ),
    ("clearing an empty list emits nothing", [created()], ClearStopList(CUSTOM, T1), []),
    (
        "after clearing, an item can be added again",
        [created(), added(email("a@x.io")), StopListCleared(list_id=CUSTOM, entries_removed=1, at=T1)],
        add("a@x.io"),
        [added(email("a@x.io"))],
    ),
    (
        "delete a custom list",
        [created()],
        DeleteStopList(CUSTOM, T1),
        [StopListDeleted(list_id=CUSTOM, at=T1)],
    ),
    (
        "the account global list exists from its first use",
        [],
        add("a@x.io", list_id=ACCOUNT_GLOBAL_LIST_ID),
        [GLOBAL_CREATED, added(email("a@x.io"), list_id=ACCOUNT_GLOBAL_LIST_ID)],
    ),
    (
        "a built-in list is created once",
        [GLOBAL_CREATED],
        add("a@x.io", list_id=ACCOUNT_GLOBAL_LIST_ID),
        [added(email("a@x.io"), list_id=ACCOUNT_GLOBAL_LIST_ID)],
    ),
    (
        "a no-op on an empty built-in stream records nothing, not even its creation",
        [],
        ClearStopList(ACCOUNT_GLOBAL_LIST_ID, T1),
        [],
    ),
    (
        "the account global list can be renamed",
        [GLOBAL_CREATED],
        UpdateStopList(ACCOUNT_GLOBAL_LIST_ID, T1, name="Do not mail"),
        [StopListUpdated(list_id=ACCOUNT_GLOBAL_LIST_ID, name="Do not mail", description="", tags=(), at=T1)],
    ),
    (
        "the platform blacklist takes addresses and domains",
        [BLACKLIST_CREATED],
        add("spam@trap.io", "trap.io", list_id=PLATFORM_BLACKLIST_ID),
        [added(email("spam@trap.io"), domain("trap.io"), list_id=PLATFORM_BLACKLIST_ID)],
    ),
    (
        "a hard bounce lands in the platform invalid list",
        [],
        hard_bounce_entry("Gone@Example.com", T1),
        [
            INVALID_CREATED,
            added(
                email("Gone@example.com"), list_id=PLATFORM_INVALID_LIST_ID, reason=EntryReason.HARD_BOUNCE
            ),
        ],
    ),
    (
        "a second hard bounce of the same address adds nothing",
        [INVALID_CREATED, added(email("gone@example.com"), list_id=PLATFORM_INVALID_LIST_ID)],
        hard_bounce_entry("GONE@example.com", T1),
        [],
    ),
    (
        "the global unsubscribe link adds to the account global list",
        [GLOBAL_CREATED],
        global_unsubscribe_entry("a@x.io", T1),
        [added(email("a@x.io"), list_id=ACCOUNT_GLOBAL_LIST_ID, reason=EntryReason.GLOBAL_UNSUBSCRIBE_LINK)],
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_accepted_commands(given: list[Event], when: Any, expected: list[Event]) -> None:
    assert then(stop_list_decider, given, when) == expected


REFUSED: list[tuple[str, list[Event], Any, type[DomainError], str]] = [
    ("create with a taken id", [created()], CreateStopList(CUSTOM, "Other", T1), AlreadyExists, "list_id"),
    (
        "create over a deleted list",
        [created(), StopListDeleted(list_id=CUSTOM, at=T1)],
        CreateStopList(CUSTOM, "Other", T1),
        AlreadyExists,
        "list_id",
    ),
    (
        "create a built-in list",
        [],
        CreateStopList(ACCOUNT_GLOBAL_LIST_ID, "Mine", T0),
        AlreadyExists,
        "list_id",
    ),
    ("create without an id", [], CreateStopList(" ", "Name", T0), ValidationFailed, "list_id"),
    ("create without a name", [], CreateStopList(CUSTOM, "  ", T0), ValidationFailed, "name"),
    ("create with a long name", [], CreateStopList(CUSTOM, "n" * 256, T0), ValidationFailed, "name"),
    (
        "create with a blank tag",
        [],
        CreateStopList(CUSTOM, "N", T0, tags=("a", " ")),
        ValidationFailed,
        "tags.1",
    ),
    ("update an unknown list", [], UpdateStopList(CUSTOM, T1, name="N"), NotFound, "list_id"),
    ("update to a blank name", [created()], UpdateStopList(CUSTOM, T1, name=""), ValidationFailed, "name"),
    ("add to an unknown list", [], add("a@x.io"), NotFound, "list_id"),
    (
        "add to a deleted list",
        [created(), StopListDeleted(list_id=CUSTOM, at=T1)],
        add("a@x.io"),
        NotFound,
        "list_id",
    ),
    ("add nothing", [created()], add(), ValidationFailed, "items"),
    ("add a malformed address", [created()], add("a@x.io", "john@"), ValidationFailed, "items.1"),
    ("add a malformed domain", [created()], add("x.io", "not a domain!"), ValidationFailed, "items.1"),
    ("add a phone in local form", [created()], add("8 912 345 67 89"), ValidationFailed, "items.0"),
    ("add a blank item", [created()], add("a@x.io", "b@x.io", " "), ValidationFailed, "items.2"),
    (
        "add a domain to the platform invalid list",
        [INVALID_CREATED],
        add("a@x.io", "x.io", list_id=PLATFORM_INVALID_LIST_ID),
        RuleViolated,
        "items.1",
    ),
    (
        "remove a malformed item",
        [created()],
        RemoveStopListEntries(CUSTOM, ("@",), T1),
        ValidationFailed,
        "items.0",
    ),
    ("remove from an unknown list", [], RemoveStopListEntries(CUSTOM, ("a@x.io",), T1), NotFound, "list_id"),
    ("clear an unknown list", [], ClearStopList(CUSTOM, T1), NotFound, "list_id"),
    ("delete an unknown list", [], DeleteStopList(CUSTOM, T1), NotFound, "list_id"),
    (
        "delete twice",
        [created(), StopListDeleted(list_id=CUSTOM, at=T1)],
        DeleteStopList(CUSTOM, T1),
        NotFound,
        "list_id",
    ),
    (
        "delete the account global list",
        [],
        DeleteStopList(ACCOUNT_GLOBAL_LIST_ID, T1),
        RuleViolated,
        "list_id",
    ),
    (
        "delete the platform invalid list",
        [INVALID_CREATED],
        DeleteStopList(PLATFORM_INVALID_LIST_ID, T1),
        RuleViolated,
        "list_id",
    ),
    ("delete the platform blacklist", [], DeleteStopList(PLATFORM_BLACKLIST_ID, T1), RuleViolated, "list_id"),
]


@pytest.mark.parametrize(
    ("given", "when", "error", "path"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused_commands(given: list[Event], when: Any, error: type[DomainError], path: str) -> None:
    then_error(stop_list_decider, given, when, error, path)


def test_entries_record_why_and_when() -> None:
    state = stop_list_decider.fold([created(), added(email("a@x.io"), reason=EntryReason.API)])
    assert state.entries.get(email("A@x.io").key) == StopListEntry(
        *named(email("a@x.io")), EntryReason.API, T1
    )
    assert len(state.entries) == 1


def test_events_round_trip_through_the_registry() -> None:
    events = [created(tags=("t",)), added(email("a@x.io"), domain("x.io"), phone("+79123456789"))]
    for event in events:
        assert registry.decode(event.type_name, 1, event.to_data()) == event


def test_stream_name() -> None:
    assert stop_list_stream("7") == "stoplist-7"


# --- attaching ---------------------------------------------------------------

ATTACHABLE: list[tuple[str, list[Event], type[DomainError] | None]] = [
    ("a custom list", [created()], None),
    ("an unknown list", [], NotFound),
    ("a deleted list", [created(), StopListDeleted(list_id=CUSTOM, at=T1)], NotFound),
    ("the account global list", [GLOBAL_CREATED], RuleViolated),
    ("the platform blacklist", [BLACKLIST_CREATED], RuleViolated),
]


@pytest.mark.parametrize(("given", "error"), [c[1:] for c in ATTACHABLE], ids=[c[0] for c in ATTACHABLE])
def test_only_custom_lists_are_attachable(given: list[Event], error: type[DomainError] | None) -> None:
    state = stop_list_decider.fold(given)
    list_id = state.list_id or "9"
    if error is None:
        ensure_attachable(state, list_id)
    else:
        with pytest.raises(error) as caught:
            ensure_attachable(state, list_id, "options.stop_list_id")
        assert caught.value.path == "options.stop_list_id"


# --- the template sink -------------------------------------------------------


def test_template_unsubscribe_sinks_into_the_attached_list() -> None:
    command = template_unsubscribe_entry("a@x.io", T1, stop_list_id=CUSTOM, add_unsubscribed=True)
    assert command == AddStopListEntries(CUSTOM, ("a@x.io",), EntryReason.TEMPLATE_UNSUBSCRIBE, T1)
    assert then(stop_list_decider, [created()], command) == [
        added(email("a@x.io"), reason=EntryReason.TEMPLATE_UNSUBSCRIBE)
    ]


@pytest.mark.parametrize(
    ("stop_list_id", "add_unsubscribed"),
    [(None, True), (CUSTOM, False)],
    ids=["no list attached", "option off"],
)
def test_template_unsubscribe_without_a_sink(stop_list_id: str | None, add_unsubscribed: bool) -> None:
    assert (
        template_unsubscribe_entry("a@x.io", T1, stop_list_id=stop_list_id, add_unsubscribed=add_unsubscribed)
        is None
    )


# --- the send-time check -----------------------------------------------------

DB1, DB2, TPL = "db1", "db2", "tpl9"
DB_LIST, TPL_LIST = "20", "30"


def index_of(
    *events: Event, databases: dict[str, str] | None = None, templates: dict[str, str] | None = None
) -> StopListIndex:
    index = StopListIndex()
    for event in events:
        index.apply(event)
    for database_id, list_id in (databases or {}).items():
        index.attach_database(database_id, list_id)
    for template_id, list_id in (templates or {}).items():
        index.attach_template(template_id, list_id)
    return index


def full_index(contact: StopListItem, *lists: str) -> StopListIndex:
    """`contact` listed in each of `lists`; DB1 and TPL have their lists attached."""
    return index_of(
        *(created(list_id) for list_id in (DB_LIST, TPL_LIST)),
        *(added(contact, list_id=list_id) for list_id in lists),
        databases={DB1: DB_LIST},
        templates={TPL: TPL_LIST},
    )


@dataclass(frozen=True)
class Send:
    contact: str
    channel: str = "email"
    database_id: str = DB1
    template_id: str | None = TPL


ALL_LISTS = (PLATFORM_INVALID_LIST_ID, PLATFORM_BLACKLIST_ID, ACCOUNT_GLOBAL_LIST_ID, DB_LIST, TPL_LIST)

CHECKS: list[tuple[str, StopListIndex, Send, StopListHit | None]] = [
    (
        "platform invalid comes first",
        full_index(email("a@x.io"), *ALL_LISTS),
        Send("a@x.io"),
        StopListHit(StopListLevel.PLATFORM, PLATFORM_INVALID_LIST_ID, email("a@x.io")),
    ),
    (
        "then the platform blacklist",
        full_index(email("a@x.io"), *ALL_LISTS[1:]),
        Send("a@x.io"),
        StopListHit(StopListLevel.PLATFORM, PLATFORM_BLACKLIST_ID, email("a@x.io")),
    ),
    (
        "then the account global list",
        full_index(email("a@x.io"), *ALL_LISTS[2:]),
        Send("a@x.io"),
        StopListHit(StopListLevel.ACCOUNT, ACCOUNT_GLOBAL_LIST_ID, email("a@x.io")),
    ),
    (
        "then the list attached to the profile's database",
        full_index(email("a@x.io"), *ALL_LISTS[3:]),
        Send("a@x.io"),
        StopListHit(StopListLevel.DATABASE, DB_LIST, email("a@x.io")),
    ),
    (
        "then the list attached to the template",
        full_index(email("a@x.io"), TPL_LIST),
        Send("a@x.io"),
        StopListHit(StopListLevel.TEMPLATE, TPL_LIST, email("a@x.io")),
    ),
    ("an address in no list passes", full_index(email("a@x.io"), *ALL_LISTS), Send("b@x.io"), None),
    (
        "the database list spares the same address in another database",
        full_index(email("a@x.io"), DB_LIST),
        Send("a@x.io", database_id=DB2),
        None,
    ),
    (
        "the database list stops email only",
        full_index(phone("+79123456789"), DB_LIST),
        Send("+79123456789", channel="sms"),
        None,
    ),
    (
        "the template list applies only to that template's sends",
        full_index(email("a@x.io"), TPL_LIST),
        Send("a@x.io", template_id="other"),
        None,
    ),
    (
        "no template, no template list",
        full_index(email("a@x.io"), TPL_LIST),
        Send("a@x.io", template_id=None),
        None,
    ),
    (
        "addresses match case-insensitively",
        full_index(email("John.Doe@example.com"), ACCOUNT_GLOBAL_LIST_ID),
        Send("JOHN.DOE@Example.com"),
        StopListHit(StopListLevel.ACCOUNT, ACCOUNT_GLOBAL_LIST_ID, email("JOHN.DOE@Example.com")),
    ),
    (
        "a domain entry stops every address at that domain",
        full_index(domain("x.io"), PLATFORM_BLACKLIST_ID),
        Send("anyone@X.io"),
        StopListHit(StopListLevel.PLATFORM, PLATFORM_BLACKLIST_ID, domain("x.io")),
    ),
    (
        "a domain entry does not stop subdomains",
        full_index(domain("x.io"), PLATFORM_BLACKLIST_ID),
        Send("anyone@mail.x.io"),
        None,
    ),
    (
        "in one list the address is named before its domain",
        index_of(GLOBAL_CREATED, added(domain("x.io"), email("a@x.io"), list_id=ACCOUNT_GLOBAL_LIST_ID)),
        Send("a@x.io"),
        StopListHit(StopListLevel.ACCOUNT, ACCOUNT_GLOBAL_LIST_ID, email("a@x.io")),
    ),
    (
        "a phone stops SMS",
        full_index(phone("+79123456789"), ACCOUNT_GLOBAL_LIST_ID),
        Send("+7 912 345-67-89", channel="sms"),
        StopListHit(StopListLevel.ACCOUNT, ACCOUNT_GLOBAL_LIST_ID, phone("+79123456789")),
    ),
    (
        "a phone on the template list stops SMS with that template",
        full_index(phone("+79123456789"), TPL_LIST),
        Send("+79123456789", channel="sms"),
        StopListHit(StopListLevel.TEMPLATE, TPL_LIST, phone("+79123456789")),
    ),
    (
        "a phone does not stop email",
        full_index(phone("+79123456789"), ACCOUNT_GLOBAL_LIST_ID),
        Send("a@x.io"),
        None,
    ),
    (
        "push tokens are never listed",
        full_index(email("a@x.io"), *ALL_LISTS),
        Send("a@x.io", channel="push"),
        None,
    ),
    (
        "a removed entry no longer stops",
        index_of(
            GLOBAL_CREATED,
            added(email("a@x.io"), list_id=ACCOUNT_GLOBAL_LIST_ID),
            StopListEntriesRemoved(list_id=ACCOUNT_GLOBAL_LIST_ID, items=named(email("a@x.io")), at=T1),
        ),
        Send("a@x.io"),
        None,
    ),
    (
        "a cleared list no longer stops",
        index_of(
            GLOBAL_CREATED,
            added(email("a@x.io"), list_id=ACCOUNT_GLOBAL_LIST_ID),
            StopListCleared(list_id=ACCOUNT_GLOBAL_LIST_ID, entries_removed=1, at=T1),
        ),
        Send("a@x.io"),
        None,
    ),
    (
        "a deleted list is detached",
        index_of(
            created(DB_LIST),
            added(email("a@x.io"), list_id=DB_LIST),
            StopListDeleted(list_id=DB_LIST, at=T1),
            databases={DB1: DB_LIST},
        ),
        Send("a@x.io"),
        None,
    ),
    (
        "a list attached before it has entries",
        index_of(databases={DB1: "unknown"}),
        Send("a@x.io"),
        None,
    ),
]


@pytest.mark.parametrize(("index", "send", "expected"), [c[1:] for c in CHECKS], ids=[c[0] for c in CHECKS])
def test_check(index: StopListIndex, send: Send, expected: StopListHit | None) -> None:
    hit = check(
        index,
        channel=send.channel,
        contact=send.contact,
        database_id=send.database_id,
        template_id=send.template_id,
    )
    assert hit == expected


def test_detaching_a_database_list() -> None:
    index = full_index(email("a@x.io"), DB_LIST)
    index.attach_database(DB1, None)
    assert check(index, channel="email", contact="a@x.io", database_id=DB1) is None
    assert index.database_list(DB1) is None


def test_deleting_a_list_keeps_other_attachments() -> None:
    index = full_index(email("a@x.io"), DB_LIST, TPL_LIST)
    index.apply(StopListDeleted(list_id=DB_LIST, at=T1))
    assert index.template_list(TPL) == TPL_LIST
    assert index.size(TPL_LIST) == 1


def test_the_index_ignores_other_events() -> None:
    index = StopListIndex()
    index.apply(Event())
    assert index.size(CUSTOM) == 0


# --- the manual bulk check -----------------------------------------------------


def test_bulk_check_sorts_items_in_input_order() -> None:
    index = index_of(created(), added(email("a@x.io"), domain("x.io")))
    result = bulk_check(index, CUSTOM, ["new@y.io", "A@X.io", "bad@", "y.io", "x.io", "a@x.io", "b@x.io"])
    assert result == BulkCheckResult(
        existing=(email("A@x.io"), domain("x.io")),
        new=(email("new@y.io"), domain("y.io"), email("b@x.io")),
        invalid=(InvalidItem(2, "bad@", "'bad@' is not a valid email address"),),
    )


def test_bulk_check_against_the_list_state() -> None:
    state = stop_list_decider.fold([created(), added(phone("+79123456789"))])
    result = bulk_check(state, CUSTOM, ["+7 912 345 67 89", "+79123456780"])
    assert result.existing == (phone("+79123456789"),)
    assert result.new == (phone("+79123456780"),)
    assert bulk_check(state, "another list", ["+79123456789"]).existing == ()


def test_bulk_check_takes_500_items() -> None:
    items = [f"user{i}@x.io" for i in range(500)]
    assert len(bulk_check(StopListIndex(), CUSTOM, items).new) == 500


def test_bulk_check_refuses_more_than_500_items() -> None:
    with pytest.raises(ValidationFailed) as caught:
        bulk_check(StopListIndex(), CUSTOM, [f"user{i}@x.io" for i in range(501)])
    assert caught.value.path == "items"
    assert "500" in caught.value.reason


PARSED = [
    ("comma", "a@x.io,b@x.io", ["a@x.io", "b@x.io"]),
    ("space", "a@x.io b@x.io", ["a@x.io", "b@x.io"]),
    ("newline", "a@x.io\nb@x.io\r\nx.io", ["a@x.io", "b@x.io", "x.io"]),
    ("mixed, blanks dropped", " a@x.io , \n\n b@x.io,,\tx.io ", ["a@x.io", "b@x.io", "x.io"]),
    ("empty", "  \n ", []),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in PARSED], ids=[c[0] for c in PARSED])
def test_parse_items(text: str, expected: list[str]) -> None:
    assert parse_items(text) == expected


ITEMS = [
    ("email", "John@Example.COM", email("John@example.com")),
    ("domain", "Example.com", domain("example.com")),
    ("domain with @", "@example.com", domain("example.com")),
    ("international phone", "+7 (912) 345-67-89", phone("+79123456789")),
    ("phone without plus", "79123456789", phone("+79123456789")),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in ITEMS], ids=[c[0] for c in ITEMS])
def test_parse_item(text: str, expected: StopListItem) -> None:
    assert parse_item(text) == expected


# --- the persistent entry set ---------------------------------------------------


def entry(value: str) -> StopListEntry:
    return StopListEntry(email(value), EntryReason.MANUAL, T0)


def test_entry_sets_are_values() -> None:
    empty = EntrySet()
    one = empty.with_entries([entry("a@x.io")])
    two = one.with_entries([entry("b@x.io")])
    branch = one.with_entries([entry("c@x.io")])  # extends an older version
    fewer = two.without([email("a@x.io").key])
    assert [len(s) for s in (empty, one, two, branch, fewer)] == [0, 1, 2, 2, 1]
    assert email("b@x.io").key not in one
    assert email("c@x.io").key not in two
    assert email("a@x.io").key in two and email("a@x.io").key not in fewer
    assert branch == EntrySet().with_entries([entry("a@x.io"), entry("c@x.io")])
    assert list(fewer) == [entry("b@x.io")]


def test_entry_set_keeps_the_first_entry_and_counts_duplicates_once() -> None:
    later = StopListEntry(email("a@x.io"), EntryReason.API, T1)
    entries = EntrySet().with_entries([entry("a@x.io"), later]).with_entries([later])
    assert len(entries) == 1
    assert entries.get(email("a@x.io").key) == entry("a@x.io")
    emptied = entries.without([email("a@x.io").key, email("a@x.io").key])
    assert len(emptied) == 0


def test_a_long_fold_stays_linear() -> None:
    events: list[Event] = [INVALID_CREATED]
    events += [added(email(f"u{i}@x.io"), list_id=PLATFORM_INVALID_LIST_ID) for i in range(20_000)]
    state = stop_list_decider.fold(events)
    assert len(state.entries) == 20_000
    assert then(stop_list_decider, events, hard_bounce_entry("u19999@x.io", T1)) == []


def keyed(kind: EntryKind, key: str) -> str:
    """A namer standing in for the names key's HMAC: nothing of the value can be read back from it."""
    return "digest-of-" + str(len(key)) + kind[0]


ERASED = StopListItem(
    kind=EntryKind.EMAIL, value="erased-0123456789abcdef", digest=keyed(EntryKind.EMAIL, "a@x.io")
)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (add("A@x.io"), []),  # still listed: re-adding it (a re-import, a new bounce) adds nothing
        (
            RemoveStopListEntries(CUSTOM, ("a@x.io",), T1),  # an operator can still lift it by its address
            [StopListEntriesRemoved(list_id=CUSTOM, items=(ERASED,), at=T1)],
        ),
    ],
    ids=["re-adding", "removing"],
)
def test_an_entry_whose_value_was_erased_is_still_matched_by_its_name(
    when: AddStopListEntries | RemoveStopListEntries, expected: list[Event]
) -> None:
    decider = stop_list_decider_for(keyed)
    given = [created(), StopListEntriesAdded(list_id=CUSTOM, items=(ERASED,), reason=EntryReason.API, at=T0)]
    assert then(decider, given, when) == expected


def test_erasing_entries_records_each_listed_one_by_its_name_and_it_still_matches() -> None:
    decider = stop_list_decider_for(keyed)
    ann, phone = keyed(EntryKind.EMAIL, "ann@x.io"), keyed(EntryKind.PHONE, "+79001234567")
    given = [created(), *then(decider, [created()], add("ann@x.io", "+79001234567", "bobby@x.io"))]
    erase = EraseStopListEntries(CUSTOM, (ann, phone, keyed(EntryKind.EMAIL, "nobody@x.io")), T1)

    [erased] = then(decider, given, erase)

    # her two entries, named and reading as erased; the name no list holds is left out
    assert erased == StopListEntriesErased(
        list_id=CUSTOM,
        items=(
            StopListItem(kind=EntryKind.EMAIL, value=erased_value(ann), digest=ann),
            StopListItem(kind=EntryKind.PHONE, value=erased_value(phone), digest=phone),
        ),
        at=T1,
    )
    state = decider.fold([*given, erased])
    values = sorted(entry.item.value for entry in state.entries)
    assert values == sorted(["bobby@x.io", erased_value(ann), erased_value(phone)])
    assert {(e.reason, e.added_at) for e in state.entries} == {(EntryReason.MANUAL, T1)}  # kept as added
    assert then(decider, [*given, erased], add("Ann@x.io")) == []  # still suppressed: nothing to add
    nobody = EraseStopListEntries(CUSTOM, (keyed(EntryKind.EMAIL, "no@x.io"),), T1)
    assert then(decider, given, nobody) == []
