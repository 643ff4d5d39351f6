"""The EventStoreDB/KurrentDB adapter's pure parts: names, versions, the envelope, planning, ordering.

No server runs here; the adapter itself is proved by the contract suite when
HERALD_ESDB_URL is set. These tests go through kurrentdbclient's own
NewEvent and RecordedEvent types, built directly.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import orjson
import pytest
from kurrentdbclient import NewEvent as EsdbNewEvent
from kurrentdbclient import RecordedEvent as EsdbRecordedEvent
from kurrentdbclient import StreamState

from herald.infra.esdb_event_store import (
    CLAIM_TYPE,
    LOG_TYPE,
    InOrder,
    LogEntry,
    Placement,
    StreamWrite,
    check_namespace,
    claim_stream,
    esdb_stream,
    expected_as_version,
    from_claim,
    from_current_version,
    from_log_entry,
    from_recorded,
    herald_stream,
    last_entry_before,
    log_stream,
    plan_append,
    to_claim,
    to_current_version,
    to_esdb_event,
    to_log_entry,
)
from herald.infra.event_store import (
    ANY,
    NO_STREAM,
    AppendResult,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersion,
)

OCCURRED = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
RECORDED = datetime(2026, 3, 1, 10, 0, 0, 7, tzinfo=UTC)


def events(count: int) -> list[NewEvent]:
    return [NewEvent(uuid4(), "ProfileUpdated", {"ordinal": i}, OCCURRED) for i in range(count)]


def recorded_from(
    new: EsdbNewEvent, stream_name: str, stream_position: int, commit_position: int = 4242
) -> EsdbRecordedEvent:
    """What the server hands back for `new`, as kurrentdbclient builds it."""
    return EsdbRecordedEvent(
        type=new.type,
        data=new.data,
        metadata=new.metadata,
        content_type=new.content_type,
        id=new.id,
        stream_name=stream_name,
        stream_position=stream_position,
        commit_position=commit_position,
        prepare_position=commit_position,
        recorded_at=datetime(2030, 1, 1, tzinfo=UTC),  # the server's clock: not Herald's recorded_at
    )


# -- versions ----------------------------------------------------------------------


@pytest.mark.parametrize(("version", "current"), [(0, StreamState.NO_STREAM), (1, 0), (2, 1), (1000, 999)])
def test_herald_versions_count_from_one_and_esdb_positions_from_zero(
    version: int, current: int | StreamState
) -> None:
    assert to_current_version(version) == current
    assert from_current_version(current) == version


def test_versions_that_no_stream_is_at_are_refused() -> None:
    with pytest.raises(ValueError):
        to_current_version(-1)
    for current in (StreamState.ANY, StreamState.EXISTS, None, -1):
        with pytest.raises(ValueError):
            from_current_version(current)


def test_an_expected_version_pins_a_version_unless_it_is_any() -> None:
    assert [expected_as_version(e) for e in (NO_STREAM, 0, 3, ANY)] == [0, 0, 3, None]


# -- names ----------------------------------------------------------------------------


def test_herald_streams_live_under_the_namespace_prefix() -> None:
    assert esdb_stream("herald", "profile-7") == "herald:profile-7"
    assert herald_stream("herald", "herald:profile-7") == "profile-7"
    assert herald_stream("herald", esdb_stream("herald", "unique-db-email-a:b")) == "unique-db-email-a:b"
    with pytest.raises(ValueError):
        herald_stream("herald", "other:profile-7")


def test_log_and_claim_streams_stay_out_of_the_filtered_log() -> None:
    # `$all` is read filtered on the prefix "<namespace>:", so Herald's own
    # bookkeeping must never start with it, nor another namespace's streams.
    prefix = esdb_stream("herald", "")
    event_id = UUID("12345678-1234-5678-1234-567812345678")
    assert claim_stream("herald", event_id) == f"herald.event-{event_id}"
    assert log_stream("herald") == "herald.log"
    for name in (claim_stream("herald", event_id), log_stream("herald"), esdb_stream("herald-b", "x")):
        assert not name.startswith(prefix)


@pytest.mark.parametrize("namespace", ["", "a:b", "a.b", "a b", "hérald"])
def test_a_namespace_that_could_overlap_another_is_refused(namespace: str) -> None:
    with pytest.raises(ValueError):
        check_namespace(namespace)


def test_a_plain_namespace_is_accepted() -> None:
    assert check_namespace("herald_eu-1") == "herald_eu-1"


# -- the envelope ---------------------------------------------------------------------


def test_an_envelope_survives_the_round_trip_through_esdb() -> None:
    new = NewEvent(
        event_id=uuid4(),
        type="ProfileCreated",
        data={"email": "анна@example.com", "fields": {"age": 31, "vip": True, "tags": ["a"], "note": None}},
        occurred_at=datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=3))),
        schema_version=3,
        metadata={"correlation_id": "c-1", "actor": "user-7", "attempt": 2, "tags": ["x"]},
    )

    sent = to_esdb_event(new, position=42, recorded_at=RECORDED)
    back = from_recorded(recorded_from(sent, "herald:profile-7", stream_position=4), "herald")

    assert (sent.type, sent.id, sent.content_type) == ("ProfileCreated", new.event_id, "application/json")
    assert orjson.loads(sent.data) == new.data
    assert back == RecordedEvent(
        event_id=new.event_id,
        stream="profile-7",
        version=5,
        position=42,
        type="ProfileCreated",
        schema_version=3,
        occurred_at=new.occurred_at,
        recorded_at=RECORDED,
        data=new.data,
        metadata=new.metadata,
    )
    assert back.occurred_at.utcoffset() == back.recorded_at.utcoffset() == timedelta(0)


def test_esdb_metadata_is_a_json_object_of_strings() -> None:
    # Multi-stream append refuses any other metadata (kurrentdbclient README, "Multi-append to stream").
    sent = to_esdb_event(events(1)[0], position=1, recorded_at=RECORDED)
    envelope = orjson.loads(sent.metadata)
    assert set(envelope) == {"position", "schema_version", "occurred_at", "recorded_at", "metadata"}
    assert all(isinstance(value, str) for value in envelope.values())
    assert envelope["occurred_at"] == "2026-03-01T09:30:15.123456+00:00"


def test_keys_the_server_adds_to_the_metadata_are_ignored() -> None:
    # Read back through the v1 API, a multi-stream append's metadata also
    # carries the record's schema name and format.
    sent = to_esdb_event(events(1)[0], position=9, recorded_at=RECORDED)
    metadata = {**orjson.loads(sent.metadata), "$schema.name": "ProfileUpdated", "$schema.format": "Json"}
    served = replace(
        recorded_from(sent, "herald:profile-7", stream_position=0), metadata=orjson.dumps(metadata)
    )

    back = from_recorded(served, "herald")

    assert (back.position, back.version, back.metadata) == (9, 1, {})


def test_a_time_without_a_zone_is_refused() -> None:
    naive = NewEvent(uuid4(), "ProfileUpdated", {}, datetime(2026, 3, 1, 9, 30))
    with pytest.raises(TypeError):
        to_esdb_event(naive, position=1, recorded_at=RECORDED)


def test_a_claim_records_where_its_event_sits() -> None:
    where = Placement("profile-7", 3, 118)
    first, second = to_claim(where), to_claim(where)

    assert first.type == CLAIM_TYPE
    assert from_claim(recorded_from(first, claim_stream("herald", uuid4()), 0)) == where
    # Never the same id twice: a re-sent claim must conflict, not pass as an idempotent retry.
    assert first.id != second.id


def test_a_log_entry_records_the_head_after_its_append() -> None:
    sent = to_log_entry(head=118)

    assert sent.type == LOG_TYPE
    assert from_log_entry(recorded_from(sent, "herald.log", 6, commit_position=990)) == LogEntry(6, 118, 990)


# -- planning an append ------------------------------------------------------------------------


def test_a_fresh_append_takes_the_next_versions_and_positions() -> None:
    batch = events(2)

    plan = plan_append([StreamAppend("profile-a", batch, 3)], {}, {"profile-a": 3}, head=40)

    assert plan.results == [AppendResult(5, (41, 42))]
    assert plan.head == 42
    assert plan.writes == [
        StreamWrite(
            "profile-a",
            3,
            [(batch[0], Placement("profile-a", 4, 41)), (batch[1], Placement("profile-a", 5, 42))],
        )
    ]


def test_a_stream_named_twice_is_one_write_and_positions_follow_the_call() -> None:
    # The contract's `test_append_many_answers_each_stream_in_order`: ESDB takes
    # one write per stream, so `$all` holds 2, 3, 5 before 4.
    first, message, last = events(2), events(1), events(1)
    appends = [
        StreamAppend("campaign", first, expected_version=1),
        StreamAppend("message", message, NO_STREAM),
        StreamAppend("campaign", last, expected_version=3),
    ]

    plan = plan_append(appends, {}, {"campaign": 1, "message": 0}, head=1)

    assert plan.results == [AppendResult(3, (2, 3)), AppendResult(1, (4,)), AppendResult(4, (5,))]
    assert [(w.stream, w.expected, [p.position for _, p in w.events]) for w in plan.writes] == [
        ("campaign", 1, [2, 3, 5]),
        ("message", 0, [4]),
    ]


def test_a_retry_of_stored_events_answers_where_they_are_and_skips_the_check() -> None:
    batch = events(2)
    placed = {
        batch[0].event_id: Placement("profile-a", 1, 7),
        batch[1].event_id: Placement("profile-a", 2, 8),
    }

    # No version for the stream at all: the check is skipped, not passed.
    plan = plan_append([StreamAppend("profile-a", batch, NO_STREAM)], placed, {}, head=20)

    assert plan.results == [AppendResult(2, (7, 8))]
    assert plan.writes == []
    assert plan.head == 20


def test_a_partial_overlap_writes_only_the_new_events_and_still_checks() -> None:
    stored, fresh = events(2)
    placed = {stored.event_id: Placement("profile-a", 2, 9)}
    appends = [StreamAppend("profile-a", [stored, fresh], expected_version=2)]

    plan = plan_append(appends, placed, {"profile-a": 2}, head=12)

    assert plan.results == [AppendResult(3, (9, 13))]
    assert [[e for e, _ in w.events] for w in plan.writes] == [[fresh]]
    with pytest.raises(WrongExpectedVersion):
        plan_append([StreamAppend("profile-a", [stored, fresh], NO_STREAM)], placed, {"profile-a": 2}, 12)


@pytest.mark.parametrize(("expected", "actual"), [(2, 3), (NO_STREAM, 1), (0, 4)])
def test_a_stale_expected_version_is_refused_with_the_actual_one(expected: int, actual: int) -> None:
    with pytest.raises(WrongExpectedVersion) as refused:
        plan_append([StreamAppend("profile-a", events(1), expected)], {}, {"profile-a": actual}, head=5)

    conflict = refused.value
    assert (conflict.stream, conflict.expected, conflict.actual) == ("profile-a", expected, actual)


def test_one_refused_part_refuses_the_whole_call() -> None:
    appends = [StreamAppend("campaign", events(2)), StreamAppend("message", events(1), NO_STREAM)]

    with pytest.raises(WrongExpectedVersion) as refused:
        plan_append(appends, {}, {"campaign": 0, "message": 1}, head=5)

    assert refused.value.stream == "message"


def test_an_append_of_nothing_checks_and_answers_the_current_version() -> None:
    plan = plan_append([StreamAppend("profile-a", [], expected_version=2)], {}, {"profile-a": 2}, head=5)

    assert (plan.results, plan.writes, plan.head) == ([AppendResult(2, ())], [], 5)
    with pytest.raises(WrongExpectedVersion):
        plan_append([StreamAppend("profile-a", [], NO_STREAM)], {}, {"profile-a": 2}, head=5)


# -- reading in position order ----------------------------------------------------------------


def envelope(position: int) -> RecordedEvent:
    return RecordedEvent(uuid4(), "s", 1, position, "T", 1, 0, 0, b"{}", b"{}")


def test_positions_permuted_within_an_append_come_out_in_order() -> None:
    order = InOrder(2)
    pushed = [order.push(envelope(p)) for p in (1, 2, 3, 5, 4, 6)]

    assert [[e.position for e in ready] for ready in pushed] == [[], [2], [3], [], [4, 5], [6]]
    assert order.next_position == 7
    assert order.settled


def test_an_event_seen_again_is_not_yielded_twice() -> None:
    # Pages of `$all` start at the previous page's last event, which comes again.
    order = InOrder(1)
    order.push(envelope(1))
    order.push(envelope(3))

    assert order.push(envelope(1)) == []
    assert order.push(envelope(3)) == []
    assert not order.settled
    assert [e.position for e in order.push(envelope(2))] == [2, 3]


@pytest.mark.parametrize(
    ("position", "index"), [(1, -1), (3, -1), (4, 0), (5, 0), (6, 1), (9, 1), (10, 2), (11, 2)]
)
def test_reading_from_a_position_starts_after_the_last_append_below_it(position: int, index: int) -> None:
    heads = [3, 5, 9]  # three appends: positions 1-3, 4-5, 6-9
    looked_at: list[int] = []

    def head_at(i: int) -> int:
        looked_at.append(i)
        return heads[i]

    assert last_entry_before(position, len(heads), head_at) == index
    assert len(looked_at) <= 2  # a binary search
