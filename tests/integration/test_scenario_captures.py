"""Every capture kind through the real processor: one scenario per kind, each event enters only its own.

Eight scenarios watch the same database, each captured by one kind of event and sending its own
trigger campaign; the test makes each kind of event happen for a profile and checks, from the log,
which scenarios the profile entered. The tables in `tests/unit/test_scenario_capture.py` decide
the matching; this proves the processor hears each kind where Herald records it (the profile's
stream, its activity stream, its messages' streams).
"""

from __future__ import annotations

from typing import Any

from herald.api.wiring import Herald
from herald.domain.content_filter import ContentFilter, check_filter
from herald.domain.pixels import PixelSettings
from herald.domain.scenario_capture import (
    Capture,
    EventCapture,
    FieldChangedCapture,
    ImportCapture,
    MessageActionCapture,
    PixelCapture,
    SubscriptionCapture,
)
from herald.domain.statuses import Status
from herald.domain.subscriptions import Cause, ChangeSubscriptionStatus
from herald.services.goals import GoalPair
from herald.services.profiles import ImportOptions
from herald.services.tracking import TrackInput
from tests.builders import DB, RESOURCE, email_subscription
from tests.scenario_builders import CTX, campaign_node, graph, messages_of, ready, scenario, trigger


def order_filter() -> ContentFilter:
    rule = {"field": "total", "type": "number", "operator": "gte", "value": 100}
    return check_filter(ContentFilter.model_validate({"rules": [rule]}), "filter")


def captures_by_kind(pixel_id: str) -> dict[str, Capture]:
    return {
        "manual_import": ImportCapture(via="manual"),
        "api_import": ImportCapture(via="api"),
        "sms_subscription": SubscriptionCapture(resource_id=RESOURCE, channel="sms"),
        "unsubscribed": SubscriptionCapture(statuses=(Status.UNSUBSCRIBED,)),
        "tier_changed": FieldChangedCapture(field="tier"),
        "clicked_confirm": MessageActionCapture(action="clicked", link_name="confirm"),
        "purchase_goal": PixelCapture(pixel_id=pixel_id, goal="Покупка"),
        "big_order": EventCapture(name="Order", filter=order_filter()),
    }


class World:
    """The eight scenarios, their campaigns, and which of them each profile has entered."""

    def __init__(self, herald: Herald) -> None:
        ready(herald)
        self.herald = herald
        self.pixel_id, _ = herald.pixels.create(PixelSettings(name="Shop", database_id=DB), 0, CTX)
        self.campaigns: dict[str, str] = {}
        for kind, capture in captures_by_kind(self.pixel_id).items():
            self.campaigns[kind] = trigger(herald, kind)
            scenario(herald, graph(campaign_node("1", self.campaigns[kind])), capture=capture)
        herald.runtime.drain()

    def entered(self, profile_id: str) -> set[str]:
        self.herald.runtime.drain()
        sent = {kind: messages_of(self.herald, campaign) for kind, campaign in self.campaigns.items()}
        return {kind for kind, profiles in sent.items() if profile_id in profiles}


def row(email: str, **fields: Any) -> dict[str, Any]:
    return {"email": email, "subscriptions": [email_subscription(email)], **fields}


def test_each_capture_kind_enters_its_scenario_and_no_other(herald: Herald) -> None:
    world = World(herald)
    profiles = herald.profiles

    [manual] = profiles.import_rows(DB, [row("ann@mail.example")], ImportOptions(), CTX)
    assert manual.profile_id is not None
    ann = manual.profile_id
    assert world.entered(ann) == {"manual_import"}

    api = profiles.upsert(DB, row("bo@mail.example"), ImportOptions(source="api"), CTX)
    assert api.profile_id is not None
    bo = api.profile_id
    assert world.entered(bo) == {"api_import"}

    sms = {"resource_id": RESOURCE, "channel": "sms", "phone": "+49 30 1234567"}
    options = ImportOptions(source="api")
    profiles.upsert(DB, {"email": "bo@mail.example", "subscriptions": [sms]}, options, CTX)
    assert world.entered(bo) == {"api_import", "sms_subscription"}

    unsubscribe = ChangeSubscriptionStatus(
        resource_id=RESOURCE,
        channel="email",
        contact="ann@mail.example",
        at=herald.clock.now(),
        status=Status.UNSUBSCRIBED,
        cause=Cause.MANUAL,
    )
    profiles.execute(ann, unsubscribe, CTX)
    assert world.entered(ann) == {"manual_import", "unsubscribed"}

    profiles.update_fields(ann, {"tier": "gold"}, CTX)  # an edit by hand: a field change, not an import
    assert world.entered(ann) == {"manual_import", "unsubscribed", "tier_changed"}
    assert len(messages_of(herald, world.campaigns["manual_import"])[ann]) == 1

    [welcome] = messages_of(herald, world.campaigns["manual_import"])[ann]
    link = {"l": "html.1", "u": "https://shop.example.com/confirm", "n": "buy"}
    herald.deliveries.hit(welcome, "click", "203.0.113.9", "Mozilla/5.0", None, herald.clock.now(), link)
    assert "clicked_confirm" not in world.entered(ann)  # another link
    confirm = {**link, "n": "confirm"}
    herald.deliveries.hit(welcome, "click", "203.0.113.9", "Mozilla/5.0", None, herald.clock.now(), confirm)
    assert "clicked_confirm" in world.entered(ann)

    herald.goals.register(world.pixel_id, [GoalPair("Подписка")], CTX, profile={"email": "bo@mail.example"})
    assert "purchase_goal" not in world.entered(bo)
    herald.goals.register(
        world.pixel_id, [GoalPair("Покупка", 9000)], CTX, profile={"email": "bo@mail.example"}
    )
    assert "purchase_goal" in world.entered(bo)

    small = TrackInput(name="Order", profile={"email": "bo@mail.example"}, properties={"total": 99})
    herald.tracking.track(DB, [small], CTX)
    assert "big_order" not in world.entered(bo)
    big = TrackInput(name="Order", profile={"email": "bo@mail.example"}, properties={"total": 120})
    herald.tracking.track(DB, [big], CTX)
    assert world.entered(bo) == {"api_import", "sms_subscription", "purchase_goal", "big_order"}
    assert world.entered(ann) == {"manual_import", "unsubscribed", "tier_changed", "clicked_confirm"}
