"""Sending policies: cap validation, precedence, day counting, the send-time check, the named policy."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import reduce
from typing import Any

import pytest
from pydantic import ValidationError

from herald.domain.errors import AlreadyExists, DomainError, NotFound, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.sending_policies import (
    EMPTY_HISTORY,
    MAX_PERIOD_DAYS,
    UNLIMITED,
    AccountSendingPolicySet,
    ChangeSendingPolicy,
    CreateSendingPolicy,
    DeleteSendingPolicy,
    FrequencyCap,
    SendCount,
    SendHistory,
    SendingPolicy,
    SendingPolicyChanged,
    SendingPolicyCreated,
    SendingPolicyDeleted,
    SetAccountSendingPolicy,
    account_sending_policy_decider,
    contact_key,
    effective_policy,
    ensure_assignable,
    local_day,
    policy_name_key,
    record_send,
    sending_policy_decider,
    sending_policy_stream,
    violation,
)
from tests.unit.decider_table import then, then_error

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TODAY = date(2026, 3, 20)
R1, R2 = "1", "2"


def cap(max_messages: int, period_days: int) -> FrequencyCap:
    return FrequencyCap(max_messages=max_messages, period_days=period_days)


def history(*sends: tuple[int, str, str]) -> SendHistory:
    """A history built through `record_send`: each send is (days before TODAY, resource, channel)."""
    return reduce(
        lambda h, send: record_send(h, TODAY - timedelta(days=send[0]), send[1], send[2]),
        sends,
        EMPTY_HISTORY,
    )


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_messages": 0, "period_days": 1}, "max_messages"),
        ({"max_messages": 16, "period_days": 1}, "max_messages"),
        ({"max_messages": 1, "period_days": 0}, "period_days"),
        ({"max_messages": 1, "period_days": 17}, "period_days"),
        ({"max_messages": "5", "period_days": 1}, "max_messages"),
        ({"max_messages": True, "period_days": 1}, "max_messages"),
        ({"max_messages": 1.5, "period_days": 1}, "max_messages"),
        ({"period_days": 1}, "max_messages"),
        ({"max_messages": 1}, "period_days"),
    ],
)
def test_a_cap_out_of_range_is_refused_naming_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FrequencyCap(**fields)
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


@pytest.mark.parametrize(("max_messages", "period_days"), [(1, 1), (15, 16), (5, 1), (1, 7)])
def test_caps_in_range_are_kept(max_messages: int, period_days: int) -> None:
    assert cap(max_messages, period_days).model_dump() == {
        "max_messages": max_messages,
        "period_days": period_days,
    }


def test_a_policy_error_names_the_cap_and_its_field() -> None:
    with pytest.raises(ValidationError) as caught:
        SendingPolicy.model_validate({"per_contact": {"max_messages": 20, "period_days": 4}})
    assert [error["loc"] for error in caught.value.errors()] == [("per_contact", "max_messages")]


def test_a_policy_refuses_unknown_caps_and_is_frozen() -> None:
    with pytest.raises(ValidationError) as caught:
        SendingPolicy.model_validate({"per_day": {"max_messages": 1, "period_days": 1}})
    assert caught.value.errors()[0]["loc"] == ("per_day",)
    policy = SendingPolicy(per_profile=cap(1, 7))
    with pytest.raises(ValidationError):
        policy.per_profile = None  # type: ignore[misc]


@pytest.mark.parametrize(
    ("c", "words"),
    [
        (cap(1, 1), "at most 1 message in 1 day"),
        (cap(2, 4), "at most 2 messages in 4 days"),
        (cap(5, 1), "at most 5 messages in 1 day"),
        (cap(1, 7), "at most 1 message in 7 days"),
    ],
)
def test_a_cap_describes_itself(c: FrequencyCap, words: str) -> None:
    assert c.describe() == words


# --- precedence ----------------------------------------------------------------------------------

ACCOUNT = SendingPolicy(per_profile_channel=cap(1, 1))
RESOURCE = SendingPolicy(per_profile_resource=cap(5, 1), per_contact=cap(2, 4))
CAMPAIGN = SendingPolicy(per_contact=cap(1, 1))


@pytest.mark.parametrize(
    ("account", "resource", "campaign", "apply_resource", "expected"),
    [
        (None, None, None, True, UNLIMITED),
        (ACCOUNT, None, None, True, ACCOUNT),
        (ACCOUNT, RESOURCE, None, True, RESOURCE),
        (ACCOUNT, RESOURCE, CAMPAIGN, False, CAMPAIGN),
        (ACCOUNT, None, CAMPAIGN, False, CAMPAIGN),
        (None, None, CAMPAIGN, False, CAMPAIGN),
        # "apply the resource's policy" ignores the campaign's own choice
        (ACCOUNT, RESOURCE, CAMPAIGN, True, RESOURCE),
        (ACCOUNT, None, CAMPAIGN, True, ACCOUNT),
        # a campaign whose chosen policy is gone falls through
        (ACCOUNT, RESOURCE, None, False, RESOURCE),
        # an unlimited policy overrides a lower level's caps whole
        (ACCOUNT, UNLIMITED, None, True, UNLIMITED),
        (ACCOUNT, RESOURCE, UNLIMITED, False, UNLIMITED),
    ],
)
def test_each_level_replaces_the_one_below_whole(
    account: SendingPolicy | None,
    resource: SendingPolicy | None,
    campaign: SendingPolicy | None,
    apply_resource: bool,
    expected: SendingPolicy,
) -> None:
    assert effective_policy(account, resource, campaign, apply_resource) == expected


def test_caps_are_not_merged_across_levels() -> None:
    chosen = effective_policy(ACCOUNT, RESOURCE, None, apply_resource_policy=True)
    assert chosen.per_profile_channel is None  # the account's channel cap does not leak through


# --- days ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "profile_tz", "account_tz", "day"),
    [
        (datetime(2026, 3, 19, 23, 30, tzinfo=UTC), "Europe/Moscow", "UTC", date(2026, 3, 20)),
        (datetime(2026, 3, 19, 20, 59, tzinfo=UTC), "Europe/Moscow", "UTC", date(2026, 3, 19)),
        (datetime(2026, 3, 19, 21, 0, tzinfo=UTC), "Europe/Moscow", "UTC", date(2026, 3, 20)),
        (datetime(2026, 3, 19, 23, 30, tzinfo=UTC), None, "UTC", date(2026, 3, 19)),
        (datetime(2026, 3, 19, 23, 30, tzinfo=UTC), None, "Europe/Moscow", date(2026, 3, 20)),
        (datetime(2026, 3, 20, 3, 0, tzinfo=UTC), "America/New_York", "Europe/Moscow", date(2026, 3, 19)),
        (datetime(2026, 3, 19, 23, 30, tzinfo=UTC), "", "Europe/Moscow", date(2026, 3, 20)),
        # a zone this build does not know counts in the account's days
        (datetime(2026, 3, 19, 23, 30, tzinfo=UTC), "Mars/Olympus_Mons", "Europe/Moscow", date(2026, 3, 20)),
    ],
)
def test_the_day_is_the_profiles_local_calendar_day(
    moment: datetime, profile_tz: str | None, account_tz: str, day: date
) -> None:
    assert local_day(moment, profile_tz, account_tz) == day


def test_a_naive_send_time_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        local_day(datetime(2026, 3, 19, 23, 30), "Europe/Moscow", "UTC")


def test_a_send_at_2330_utc_counts_on_the_next_moscow_day() -> None:
    policy = SendingPolicy(per_profile=cap(1, 1))
    evening = datetime(2026, 3, 19, 23, 30, tzinfo=UTC)
    sent = record_send(EMPTY_HISTORY, local_day(evening, "Europe/Moscow", "UTC"), R1, "email")
    morning_20th = local_day(datetime(2026, 3, 20, 6, 0, tzinfo=UTC), "Europe/Moscow", "UTC")
    morning_21st = local_day(datetime(2026, 3, 21, 6, 0, tzinfo=UTC), "Europe/Moscow", "UTC")
    assert (
        violation(policy, sent, None, morning_20th, R1, "email") == "per profile: at most 1 message in 1 day"
    )
    assert violation(policy, sent, None, morning_21st, R1, "email") is None
    # in UTC the same send fell on the 19th, so the 20th would be free
    utc_sent = record_send(EMPTY_HISTORY, local_day(evening, None, "UTC"), R1, "email")
    assert violation(policy, utc_sent, None, morning_20th, R1, "email") is None


@pytest.mark.parametrize(
    ("contact", "key"),
    [("Ann@Example.com", "ann@example.com"), ("+79123456789", "+79123456789")],
)
def test_contact_histories_are_keyed_case_insensitively_for_emails(contact: str, key: str) -> None:
    assert contact_key(contact) == key


# --- each cap ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "sends", "resource", "channel", "reason"),
    [
        # per profile: every message to the profile counts
        (SendingPolicy(per_profile=cap(1, 7)), [], R1, "email", None),
        (
            SendingPolicy(per_profile=cap(1, 7)),
            [(3, R2, "sms")],
            R1,
            "email",
            "per profile: at most 1 message in 7 days",
        ),
        (SendingPolicy(per_profile=cap(2, 7)), [(3, R2, "sms")], R1, "email", None),
        # per profile within a resource: only the resource's messages count
        (SendingPolicy(per_profile_resource=cap(1, 1)), [(0, R2, "email")], R1, "email", None),
        (
            SendingPolicy(per_profile_resource=cap(1, 1)),
            [(0, R1, "sms")],
            R1,
            "email",
            "per profile within a resource: at most 1 message in 1 day",
        ),
        (
            SendingPolicy(per_profile_resource=cap(5, 1)),
            [(0, R1, "email")] * 5,
            R1,
            "email",
            "per profile within a resource: at most 5 messages in 1 day",
        ),
        (SendingPolicy(per_profile_resource=cap(5, 1)), [(0, R1, "email")] * 4, R1, "email", None),
        # per profile within a channel: every resource's messages on the channel count
        (SendingPolicy(per_profile_channel=cap(1, 1)), [(0, R1, "sms")], R1, "email", None),
        (
            SendingPolicy(per_profile_channel=cap(1, 1)),
            [(0, R2, "email")],
            R1,
            "email",
            "per profile within a channel: at most 1 message in 1 day",
        ),
        # a cap that is not set never blocks
        (UNLIMITED, [(0, R1, "email")] * 15, R1, "email", None),
    ],
)
def test_profile_caps(
    policy: SendingPolicy,
    sends: list[tuple[int, str, str]],
    resource: str,
    channel: str,
    reason: str | None,
) -> None:
    assert violation(policy, history(*sends), None, TODAY, resource, channel) == reason


def test_the_contact_cap_counts_the_contacts_history_across_profiles() -> None:
    policy = SendingPolicy(per_contact=cap(2, 4))
    fresh_profile = EMPTY_HISTORY  # another profile holding the same email sent these
    contact = history((1, R1, "email"), (3, R2, "email"))
    assert (
        violation(policy, fresh_profile, contact, TODAY, R1, "email")
        == "per contact: at most 2 messages in 4 days"
    )
    assert violation(policy, fresh_profile, history((1, R1, "email")), TODAY, R1, "email") is None


def test_the_contact_cap_does_not_apply_without_a_contact_and_ignores_the_profile_history() -> None:
    policy = SendingPolicy(per_contact=cap(1, 1))
    busy_profile = history((0, R1, "push"), (0, R1, "push"))
    assert violation(policy, busy_profile, None, TODAY, R1, "push") is None
    assert violation(policy, busy_profile, EMPTY_HISTORY, TODAY, R1, "push") is None


def test_the_first_exceeded_cap_in_the_guides_order_is_named() -> None:
    policy = SendingPolicy(per_profile=cap(1, 1), per_profile_channel=cap(1, 1), per_contact=cap(1, 1))
    sent = history((0, R1, "email"))
    assert violation(policy, sent, sent, TODAY, R1, "email") == "per profile: at most 1 message in 1 day"
    loose = SendingPolicy(per_profile=cap(2, 1), per_profile_channel=cap(1, 1), per_contact=cap(1, 1))
    assert (
        violation(loose, sent, sent, TODAY, R1, "email")
        == "per profile within a channel: at most 1 message in 1 day"
    )


# --- window edges --------------------------------------------------------------------------------


@pytest.mark.parametrize("period", [1, 2, 7, 16])
def test_the_window_is_today_and_the_days_before_it(period: int) -> None:
    policy = SendingPolicy(per_profile=cap(1, period))
    last_day_inside = history((period - 1, R1, "email"))
    first_day_outside = history((period, R1, "email"))
    assert violation(policy, last_day_inside, None, TODAY, R1, "email") is not None
    assert violation(policy, first_day_outside, None, TODAY, R1, "email") is None


def test_sends_spread_over_the_window_add_up() -> None:
    policy = SendingPolicy(per_profile=cap(3, 7))
    assert violation(policy, history((0, R1, "email"), (6, R1, "email")), None, TODAY, R1, "email") is None
    three = history((0, R1, "email"), (3, R2, "sms"), (6, R1, "email"))
    assert violation(policy, three, None, TODAY, R1, "email") == "per profile: at most 3 messages in 7 days"
    assert violation(policy, three, None, TODAY + timedelta(days=1), R1, "email") is None


def test_a_day_recorded_after_today_still_counts() -> None:
    # the profile's time zone moved west: yesterday's send sits on "tomorrow"
    policy = SendingPolicy(per_profile=cap(1, 1))
    assert violation(policy, history((-1, R1, "email")), None, TODAY, R1, "email") is not None


# --- recording and pruning -----------------------------------------------------------------------


def test_record_send_counts_per_day_resource_and_channel_in_order() -> None:
    recorded = history((0, R2, "sms"), (1, R1, "email"), (0, R1, "email"), (0, R2, "sms"))
    assert recorded.entries == (
        SendCount(day=TODAY - timedelta(days=1), resource_id=R1, channel="email", count=1),
        SendCount(day=TODAY, resource_id=R1, channel="email", count=1),
        SendCount(day=TODAY, resource_id=R2, channel="sms", count=2),
    )


def test_record_send_leaves_the_history_it_was_given_unchanged() -> None:
    before = history((0, R1, "email"))
    record_send(before, TODAY, R1, "email")
    assert before.entries == (SendCount(day=TODAY, resource_id=R1, channel="email", count=1),)


def test_days_no_window_can_reach_are_pruned() -> None:
    recorded = history((MAX_PERIOD_DAYS, R1, "email"), (MAX_PERIOD_DAYS - 1, R1, "email"), (0, R1, "sms"))
    assert [entry.day for entry in recorded.entries] == [TODAY - timedelta(days=MAX_PERIOD_DAYS - 1), TODAY]


def test_a_late_record_does_not_prune_newer_days() -> None:
    recorded = history((0, R1, "email"), (20, R1, "email"), (3, R1, "email"))
    assert [entry.day for entry in recorded.entries] == [TODAY - timedelta(days=3), TODAY]


def test_a_history_survives_a_json_round_trip() -> None:
    recorded = history((0, R1, "email"), (2, R2, "sms"))
    assert SendHistory.model_validate_json(recorded.model_dump_json()) == recorded


# --- the named policy ----------------------------------------------------------------------------

P = "3"
WEEKLY = SendingPolicy(per_profile=cap(1, 7))
DAILY_CONTACT = SendingPolicy(per_profile_resource=cap(5, 1), per_contact=cap(2, 4))


def created(**overrides: Any) -> SendingPolicyCreated:
    fields: dict[str, Any] = dict(policy_id=P, name="Custom policy 1", policy=WEEKLY, at=T0)
    return SendingPolicyCreated(**(fields | overrides))


def test_stream_and_name_key() -> None:
    assert sending_policy_stream(P) == "sendingpolicy-3"
    assert policy_name_key("  Custom Policy 1 ") == policy_name_key("custom policy 1")


@pytest.mark.parametrize(
    ("given", "when", "expected"),
    [
        ([], CreateSendingPolicy(P, "  Custom policy 1 ", WEEKLY, T0), [created()]),
        (
            [],
            CreateSendingPolicy(P, "Unlimited", UNLIMITED, T0),
            [created(name="Unlimited", policy=UNLIMITED)],
        ),
        (
            [created()],
            ChangeSendingPolicy(P, T0, policy=DAILY_CONTACT),
            [SendingPolicyChanged(policy_id=P, name="Custom policy 1", policy=DAILY_CONTACT, at=T0)],
        ),
        (
            [created()],
            ChangeSendingPolicy(P, T0, name="Weekly"),
            [SendingPolicyChanged(policy_id=P, name="Weekly", policy=WEEKLY, at=T0)],
        ),
        ([created()], ChangeSendingPolicy(P, T0, name="Custom policy 1 ", policy=WEEKLY), []),
        ([created()], ChangeSendingPolicy(P, T0), []),
        (
            [created()],
            DeleteSendingPolicy(P, T0),
            [SendingPolicyDeleted(policy_id=P, name="Custom policy 1", at=T0)],
        ),
    ],
)
def test_sending_policy_decisions(given: list[Event], when: Any, expected: list[Event]) -> None:
    assert then(sending_policy_decider, given, when) == expected


@pytest.mark.parametrize(
    ("given", "when", "error", "path"),
    [
        ([], CreateSendingPolicy(P, " ", WEEKLY, T0), ValidationFailed, "name"),
        ([], CreateSendingPolicy(P, "x" * 256, WEEKLY, T0), ValidationFailed, "name"),
        ([], CreateSendingPolicy(" ", "Weekly", WEEKLY, T0), ValidationFailed, "policy_id"),
        ([created()], CreateSendingPolicy(P, "Other", WEEKLY, T0), AlreadyExists, "policy_id"),
        ([], ChangeSendingPolicy(P, T0, name="Weekly"), NotFound, "policy_id"),
        ([created()], ChangeSendingPolicy(P, T0, name=""), ValidationFailed, "name"),
        ([], DeleteSendingPolicy(P, T0), NotFound, "policy_id"),
        (
            [created(), SendingPolicyDeleted(policy_id=P, name="x", at=T0)],
            DeleteSendingPolicy(P, T0),
            NotFound,
            "policy_id",
        ),
        # deleted ids are never reused
        (
            [created(), SendingPolicyDeleted(policy_id=P, name="x", at=T0)],
            CreateSendingPolicy(P, "Again", WEEKLY, T0),
            AlreadyExists,
            "policy_id",
        ),
    ],
)
def test_sending_policy_refusals(given: list[Event], when: Any, error: type[DomainError], path: str) -> None:
    then_error(sending_policy_decider, given, when, error, path)


def test_the_folded_state_holds_the_current_name_and_caps() -> None:
    changed = SendingPolicyChanged(policy_id=P, name="Weekly", policy=DAILY_CONTACT, at=T0)
    state = sending_policy_decider.fold([created(), changed])
    assert (state.name, state.policy, state.exists) == ("Weekly", DAILY_CONTACT, True)
    assert not sending_policy_decider.fold(
        [created(), SendingPolicyDeleted(policy_id=P, name="Weekly", at=T0)]
    ).exists


def test_only_an_existing_policy_can_be_assigned() -> None:
    ensure_assignable(sending_policy_decider.fold([created()]), P)
    with pytest.raises(NotFound) as caught:
        ensure_assignable(sending_policy_decider.fold([]), P, "settings.sending_policy_id")
    assert caught.value.path == "settings.sending_policy_id"
    deleted = sending_policy_decider.fold([created(), SendingPolicyDeleted(policy_id=P, name="x", at=T0)])
    with pytest.raises(NotFound):
        ensure_assignable(deleted, P)


@pytest.mark.parametrize(
    "event",
    [
        created(policy=DAILY_CONTACT),
        SendingPolicyChanged(policy_id=P, name="Weekly", policy=UNLIMITED, at=T0),
        SendingPolicyDeleted(policy_id=P, name="Weekly", at=T0),
        AccountSendingPolicySet(policy_id=P, at=T0),
        AccountSendingPolicySet(policy_id=None, at=T0),
    ],
)
def test_events_round_trip_through_the_registry(event: Event) -> None:
    assert registry.decode(event.type_name, event.schema_version, event.to_data()) == event


# --- the account's policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "when", "expected"),
    [
        ([], SetAccountSendingPolicy(P, T0), [AccountSendingPolicySet(policy_id=P, at=T0)]),
        ([], SetAccountSendingPolicy(None, T0), []),
        ([AccountSendingPolicySet(policy_id=P, at=T0)], SetAccountSendingPolicy(P, T0), []),
        (
            [AccountSendingPolicySet(policy_id=P, at=T0)],
            SetAccountSendingPolicy("4", T0),
            [AccountSendingPolicySet(policy_id="4", at=T0)],
        ),
        (
            [AccountSendingPolicySet(policy_id=P, at=T0)],
            SetAccountSendingPolicy(None, T0),
            [AccountSendingPolicySet(policy_id=None, at=T0)],
        ),
    ],
)
def test_account_policy_decisions(
    given: list[Event], when: SetAccountSendingPolicy, expected: list[Event]
) -> None:
    assert then(account_sending_policy_decider, given, when) == expected


def test_an_account_policy_id_cannot_be_blank() -> None:
    then_error(
        account_sending_policy_decider, [], SetAccountSendingPolicy("  ", T0), ValidationFailed, "policy_id"
    )


def test_the_account_state_holds_the_latest_choice() -> None:
    events = [AccountSendingPolicySet(policy_id=P, at=T0), AccountSendingPolicySet(policy_id=None, at=T0)]
    assert account_sending_policy_decider.fold(events[:1]).policy_id == P
    assert account_sending_policy_decider.fold(events).policy_id is None
