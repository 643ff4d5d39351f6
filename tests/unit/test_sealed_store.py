"""The sealed store over the SQLite log: what is stored sealed, what every read path opens, what an
erased profile's events read as, and the names a byte search of the stored JSON still finds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from herald.domain.deliveries import MessageHardBounced
from herald.domain.events import registry
from herald.domain.scenario_instances import ScenarioWebhookAnswered, journey_stream
from herald.domain.stop_lists import EntryKind, EntryReason, StopListEntriesAdded, StopListItem, parse_item
from herald.domain.tracking import GOAL_MARKS, ActivityTracked
from herald.infra.clock import ManualClock
from herald.infra.event_store import EventFilter, NewEvent, RecordedEvent, mentions_any
from herald.infra.log_names import open_log_names
from herald.infra.profile_keys import ProfileKeys
from herald.infra.sealed_entries import entry_owner
from herald.infra.sealed_store import SealedEventStore, Sealer
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.topic_format import decode_wanted, encode

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
ANN = "p-ann"
ADDRESS = "ann.secret@example.org"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SealedEventStore]:
    log = SqliteEventStore(tmp_path / "events.sqlite", ManualClock(AT))
    names = open_log_names(tmp_path, tmp_path / "events.sqlite")
    sealed = SealedEventStore(log, Sealer(ProfileKeys(tmp_path / "keys"), names))
    yield sealed
    sealed.close()


def _append(store: SealedEventStore, stream: str, event: Any) -> None:
    store.append(stream, [NewEvent(uuid4(), event.type_name, event.to_data(), AT, event.schema_version)])


def _goal() -> ActivityTracked:
    properties = {"goal": "purchase", "value": 25, "note": ADDRESS}
    return ActivityTracked(database_id="1", profile_id=ANN, name="Purchase", properties=properties, at=AT)


def _bounce() -> MessageHardBounced:
    return MessageHardBounced(
        message_id="m1",
        campaign_id="c1",
        template_id="t1",
        template_version=1,
        profile_id=ANN,
        database_id="1",
        resource_id="r1",
        channel="email",
        contact=ADDRESS,
        code=550,
        response=f"550 5.1.1 <{ADDRESS}>: unknown user",
        at=AT,
    )


def _typed(event: RecordedEvent) -> Any:
    return registry.decode(event.type, event.schema_version, event.payload)


def test_personal_values_are_stored_sealed_and_every_read_path_opens_them(store: SealedEventStore) -> None:
    _append(store, f"activity-{ANN}", _goal())
    _append(store, "message-m1", _bounce())
    stored = list(store.inner.read_all())
    assert [ADDRESS.encode() in (e.stored_data or b"") for e in stored] == [False, False]
    reads = {
        "read_all": list(store.read_all()),
        "read_range": store.read_range(1, 2),
        "read_range filtered": store.read_range(
            1, 2, EventFilter(frozenset({"ActivityTracked", "MessageHardBounced"}))
        ),
        "read_stream": [*store.read_stream(f"activity-{ANN}"), *store.read_stream("message-m1")],
        # a partition of the scale engine builds them from the topic's copy of the stored bytes
        "recorded": [decode_wanted(encode(e), None, store.recorded)[1] for e in stored],
    }
    for path, events in reads.items():
        goal, bounce = (_typed(e) for e in events)  # decoded from the payload, as the projections do
        assert goal.properties["note"] == ADDRESS, path
        assert (bounce.contact, bounce.response) == (ADDRESS, f"550 5.1.1 <{ADDRESS}>: unknown user"), path


def test_a_sealed_goal_still_names_itself_to_a_byte_search_but_not_its_values(
    store: SealedEventStore,
) -> None:
    _append(store, f"activity-{ANN}", _goal())
    plain = ActivityTracked(database_id="1", profile_id=ANN, name="Viewed", properties={"page": "/"}, at=AT)
    _append(store, f"activity-{ANN}", plain)
    goal_only = EventFilter(frozenset({"ActivityTracked"}), (), {"ActivityTracked": GOAL_MARKS})
    assert [e.data["name"] for e in store.read_range(1, 2, goal_only)] == ["Purchase"]
    [stored_goal, _] = store.inner.read_all()
    assert mentions_any(stored_goal, GOAL_MARKS) and b"purchase" not in (stored_goal.stored_data or b"")


def test_an_erased_profiles_events_read_as_erased_and_still_decode(store: SealedEventStore) -> None:
    _append(store, f"activity-{ANN}", _goal())
    _append(store, "message-m1", _bounce())
    store.sealer.keys.destroy(ANN)
    goal, bounce = (_typed(e) for e in store.read_range(1, 2))
    assert goal.properties == {} and goal.name == "Purchase"
    assert bounce.response == "" and ADDRESS not in bounce.contact and bounce.code == 550
    token = store.inner.read_range(2, 2)[0].data["_sealed"]  # the stand-in is keyed: no one recomputes it
    assert (
        bounce.contact
        == store.sealer.names.erased_contact(token)
        != "erased-" + sha256(token.encode()).hexdigest()[:16]
    )
    _append(store, "message-m1", _bounce())  # written after the erasure: nothing personal is kept
    [late] = store.inner.read_range(3, 3)
    assert ADDRESS.encode() not in (late.stored_data or b"")
    assert _typed(late).response == ""  # and it still reads as the event it is


def test_a_journeys_webhook_url_and_answer_are_sealed_and_read_empty_once_erased(
    store: SealedEventStore,
) -> None:
    answered = ScenarioWebhookAnswered(
        scenario_id="7",
        profile_id=ANN,
        at=AT,
        entry=1,
        visit=1,
        attempt=1,
        method="GET",
        url=f"https://crm.example.com/hook?email={ADDRESS}",
        status=200,
        body=f'{{"email": "{ADDRESS}"}}',
    )
    _append(store, journey_stream("7", ANN), answered)
    [stored] = store.inner.read_all()
    assert ADDRESS.encode() not in (stored.stored_data or b"")
    assert _typed(store.read_range(1, 1)[0]) == answered
    store.sealer.keys.destroy(ANN)
    erased = _typed(store.read_range(1, 1)[0])
    assert (erased.url, erased.body, erased.status, erased.method) == ("", "", 200, "GET")


def _listed(*items: str) -> StopListEntriesAdded:
    named = tuple(parse_item(i) for i in items)
    return StopListEntriesAdded(list_id="global", items=named, reason=EntryReason.API, at=AT)


def test_stop_list_entries_are_sealed_one_by_one_and_read_as_erased_once_their_key_is_gone(
    store: SealedEventStore,
) -> None:
    phone = "+79031234567"
    _append(store, "stoplist-global", _listed(ADDRESS, phone, "spam.example"))
    stored = next(store.inner.read_all()).stored_data or b""
    assert ADDRESS.encode() not in stored and phone.encode() not in stored
    assert b"spam.example" in stored  # a domain is no one's personal data
    names = store.sealer.names
    digest = names.entry_digest("email", ADDRESS)
    read = store.read_stream("stoplist-global")[0].data["items"]
    assert [(i["value"], i["digest"]) for i in read] == [
        (ADDRESS, digest),
        (phone, names.entry_digest("phone", phone)),
        ("spam.example", names.entry_digest("domain", "spam.example")),
    ]

    store.sealer.keys.destroy(entry_owner(digest))
    erased = _typed(store.read_stream("stoplist-global")[0])
    assert [(i.value, i.digest) for i in erased.items][:2] == [
        (f"erased-{digest[:16]}", digest),  # still named, so still matched
        (phone, names.entry_digest("phone", phone)),  # another entry's key: untouched
    ]
    _append(store, "stoplist-global", _listed(ADDRESS.upper()))  # listed again after the erasure
    again = list(store.inner.read_all())[-1]
    assert ADDRESS.encode() not in (again.stored_data or b"").lower()
    assert [i["value"] for i in again.data["items"]] == [f"erased-{digest[:16]}"]


def test_an_entry_named_plainly_is_stored_under_its_keyed_name(store: SealedEventStore) -> None:
    plain = StopListItem(kind=EntryKind.EMAIL, value=ADDRESS, digest=ADDRESS)  # as `plain_names` names it
    listed = StopListEntriesAdded(list_id="global", items=(plain,), reason=EntryReason.API, at=AT)
    _append(store, "stoplist-global", listed)
    assert ADDRESS.encode() not in (next(store.inner.read_all()).stored_data or b"")
    (item,) = store.read_stream("stoplist-global")[0].data["items"]
    assert item == {
        "kind": "email",
        "value": ADDRESS,
        "digest": store.sealer.names.entry_digest("email", ADDRESS),
    }
