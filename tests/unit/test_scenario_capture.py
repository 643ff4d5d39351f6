"""Capture conditions: what each event is as a capture fact, and which captures it matches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from herald.domain import deliveries as dl
from herald.domain.content_filter import ContentFilter, check_filter
from herald.domain.events import Event
from herald.domain.profiles import FieldChange, ProfileCreated, ProfileFieldsUpdated
from herald.domain.scenario_capture import (
    Capture,
    EventCapture,
    FieldChangedCapture,
    ImportCapture,
    MessageActionCapture,
    PixelCapture,
    SubscriptionCapture,
    captures,
    facts_of,
)
from herald.domain.statuses import Status
from herald.domain.subscriptions import Cause, SubscriptionAdded, SubscriptionStatusChanged
from herald.domain.tracking import ActivityTracked

AT = datetime(2026, 3, 2, 9, tzinfo=UTC)
PROFILE = {"profile_id": "p1", "database_id": "1", "at": AT}
SUBSCRIPTION = {
    "profile_id": "p1",
    "database_id": "1",
    "resource_id": "7",
    "channel": "email",
    "contact": "a@x.org",
}
MESSAGE = {
    "message_id": "m1",
    "campaign_id": "9",
    "template_id": "1",
    "template_version": 1,
    "resource_id": "7",
    "channel": "email",
    "contact": "a@x.org",
    **PROFILE,
}


def created(source: str) -> ProfileCreated:
    return ProfileCreated(**PROFILE, md5_id="m", xxh_id="x", fields={}, source=source)


def updated(source: str, *fields: str) -> ProfileFieldsUpdated:
    return ProfileFieldsUpdated(**PROFILE, changes={f: FieldChange(new=1) for f in fields}, source=source)


def clicked(link: str = "confirm", bot: bool = False, is_test: bool = False) -> dl.LinkClicked:
    return dl.LinkClicked(
        **MESSAGE, unique=True, bot=bot, is_test=is_test, link_id="l1", url="u", link_name=link
    )


def tracked(name: str, **properties: Any) -> ActivityTracked:
    return ActivityTracked(database_id="1", profile_id="p1", name=name, properties=properties, at=AT)


def matched(capture: Capture, event: Event) -> bool:
    return any(captures(capture, fact) for fact in facts_of(event))


@pytest.mark.parametrize(
    ("capture", "event", "expected"),
    [
        (ImportCapture(via="any"), created("import"), True),
        (ImportCapture(via="api"), created("api"), True),
        (ImportCapture(via="api"), created("import"), False),
        (ImportCapture(via="manual"), created("manual"), True),
        (ImportCapture(via="any"), created("segment"), False),  # made by tracking: not an import
        (ImportCapture(via="any"), updated("import", "plan"), True),
        (ImportCapture(via="any"), updated("link", "plan"), False),
        (ImportCapture(via="any"), updated("manual", "plan"), False),  # an edit, a scoring rule: no import
        (ImportCapture(via="manual"), updated("import", "plan"), True),
        (ImportCapture(via="api"), updated("api", "plan"), True),
        (FieldChangedCapture(), updated("manual", "plan"), True),
        (FieldChangedCapture(), updated("link", "plan"), True),
        (FieldChangedCapture(field="plan"), updated("api", "plan", "age"), True),
        (FieldChangedCapture(field="tier"), updated("api", "plan"), False),
        (
            SubscriptionCapture(),
            SubscriptionAdded(
                **SUBSCRIPTION, status=Status.SUBSCRIBED, priority=0, registered_at=AT, cause=Cause.FORM
            ),
            True,
        ),
        (
            SubscriptionCapture(resource_id="8"),
            SubscriptionAdded(
                **SUBSCRIPTION, status=Status.SUBSCRIBED, priority=0, registered_at=AT, cause=Cause.FORM
            ),
            False,
        ),
        (
            SubscriptionCapture(statuses=(Status.UNSUBSCRIBED,)),
            SubscriptionStatusChanged(
                **SUBSCRIPTION,
                from_status=Status.SUBSCRIBED,
                to_status=Status.UNSUBSCRIBED,
                cause=Cause.MANUAL,
            ),
            True,
        ),
        (
            MessageActionCapture(action="confirmed"),
            SubscriptionStatusChanged(
                **SUBSCRIPTION,
                from_status=Status.UNCONFIRMED,
                to_status=Status.SUBSCRIBED,
                cause=Cause.DOI_CONFIRMED,
            ),
            True,
        ),
        (MessageActionCapture(action="clicked", link_name="confirm"), clicked(), True),
        (MessageActionCapture(action="clicked", link_name="buy"), clicked(), False),
        (MessageActionCapture(action="clicked", campaign_ids=("9",)), clicked(), True),
        (MessageActionCapture(action="clicked"), clicked(bot=True), False),  # a scanner is nobody
        (MessageActionCapture(action="clicked"), clicked(is_test=True), False),
        (MessageActionCapture(action="opened"), clicked(), False),
        (PixelCapture(), tracked("goal", goal="Покупка", pixel_id="18", value=9000), True),
        (PixelCapture(pixel_id="18", goal="Покупка"), tracked("goal", goal="Покупка", pixel_id="18"), True),
        (PixelCapture(goal="Подписка"), tracked("goal", goal="Покупка", pixel_id="18"), False),
        (PixelCapture(), tracked("Viewed"), False),
    ],
)
def test_which_events_capture(capture: Capture, event: Event, expected: bool) -> None:
    assert matched(capture, event) is expected


def test_a_tracked_event_captures_by_name_and_property_filter() -> None:
    rule = {"field": "total", "type": "number", "operator": "gte", "value": 100}
    capture = EventCapture(
        name="Order", filter=check_filter(ContentFilter.model_validate({"rules": [rule]}), "f")
    )
    assert matched(capture, tracked("Order", total=120))
    assert not matched(capture, tracked("Order", total=99))
    assert not matched(capture, tracked("Refund", total=120))


def test_events_that_capture_nothing_give_no_facts() -> None:
    anonymous = ActivityTracked(database_id="1", anonymous_id="a", name="Viewed", at=AT)
    assert facts_of(anonymous) == ()
    assert facts_of(dl.MessageSendAttempted(**MESSAGE, attempt=1, sender_id="s")) == ()
