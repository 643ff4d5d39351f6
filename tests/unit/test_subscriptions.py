"""A profile's subscriptions: adding, status rules, priority, double opt-in, categories, fields."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from herald.domain.decider import Decider
from herald.domain.errors import DomainError, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.fields import FieldDefinition, FieldType
from herald.domain.resources import (
    AddCategory,
    Category,
    CreateResource,
    CustomChannelSettings,
    DefineSubscriptionField,
    DeleteResource,
    EmailSettings,
    PushPlatform,
    PushProvider,
    PushSettings,
    ResourceCommand,
    ResourceSettings,
    ResourceState,
    SmsSettings,
    resource_decider,
)
from herald.domain.secrets import SealedSecret
from herald.domain.statuses import Status
from herald.domain.subscriptions import (
    SUBSCRIPTION_EVENTS,
    TRANSITIONS,
    AddSubscription,
    Browser,
    CategoryStatus,
    CategorySubscriptionChanged,
    Cause,
    ChangeCategorySubscription,
    ChangeSubscriptionPriority,
    ChangeSubscriptionStatus,
    ConfirmSubscription,
    Device,
    DevicePlatform,
    ProfileRef,
    RemoveSubscription,
    SubscriptionAdded,
    SubscriptionCommand,
    SubscriptionFieldsUpdated,
    SubscriptionKey,
    SubscriptionPriorityChanged,
    SubscriptionRemoved,
    SubscriptionsState,
    SubscriptionStatusChanged,
    UpdateSubscriptionFields,
    contacts,
    decide_subscription,
    evolve_subscriptions,
)
from tests.unit.decider_table import then, then_error

SEALED_KEY = SealedSecret(key_id="test-key", ciphertext="c2VhbGVk")  # what the domain stores

PROFILE = ProfileRef(profile_id="p1", database_id="db1")
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ANN = "ann@example.com"
BOB = "bob@example.com"
PHONE = "+79123456789"
TOKEN = "fcm-token-1"

subscriptions: Decider[SubscriptionCommand, SubscriptionsState] = Decider(
    initial=SubscriptionsState(),
    decide=lambda command, subs: decide_subscription(command, subs, PROFILE),
    evolve=evolve_subscriptions,
)


def build_resource(*commands: ResourceCommand) -> ResourceState:
    """A resource snapshot built through the commands users send."""
    state = resource_decider.initial
    for command in commands:
        state = resource_decider.fold(resource_decider.decide(command, state), state)
    return state


def _resource(resource_id: str, *, raise_priority: bool = False) -> ResourceState:
    return build_resource(
        CreateResource(
            resource_id=resource_id,
            token="rtoken",
            settings=ResourceSettings(
                name="Shop",
                database_ids=("db1",),
                source_urls=("https://shop.example.com",),
                default_tracking_domain="trk.example.com",
                raise_priority_for_new_subscriptions=raise_priority,
            ),
            channels=(
                EmailSettings(from_name="Shop", from_email="news@example.com", list_id="promo.example.com"),
                SmsSettings(caller_id="Shop"),
                PushSettings(
                    platforms=(PushPlatform.ANDROID, PushPlatform.CHROME),
                    providers=(PushProvider.FCM,),
                    firebase_api_key=SEALED_KEY,
                ),
                CustomChannelSettings(name="whatsapp"),
                CustomChannelSettings(name="telegram_bot"),
            ),
        ),
        DefineSubscriptionField(
            resource_id=resource_id,
            channel="sms",
            field=FieldDefinition(name="store", title="Store", type=FieldType.STRING, required=True),
        ),
        DefineSubscriptionField(
            resource_id=resource_id,
            channel="sms",
            field=FieldDefinition(name="visits", type=FieldType.INT, default=0),
        ),
        AddCategory(resource_id=resource_id, category=Category(api_name="promo", title="Promo")),
        AddCategory(resource_id=resource_id, category=Category(api_name="news", title="News")),
        AddCategory(
            resource_id=resource_id,
            category=Category(api_name="transactions", title="Orders", mandatory=True),
        ),
    )


RESOURCE = _resource("r1")
RAISING = _resource("r2", raise_priority=True)
OTHER_DB = build_resource(
    CreateResource(
        resource_id="r3",
        token="t",
        settings=ResourceSettings(
            name="Elsewhere",
            database_ids=("db9",),
            source_urls=("https://x.example.com",),
            default_tracking_domain="trk.example.com",
        ),
        channels=(SmsSettings(caller_id="X"),),
    )
)
DELETED = build_resource(
    CreateResource(
        resource_id="r4",
        token="t",
        settings=ResourceSettings(
            name="Gone",
            database_ids=("db1",),
            source_urls=("https://x.example.com",),
            default_tracking_domain="trk.example.com",
        ),
        channels=(SmsSettings(caller_id="X"),),
    ),
    DeleteResource(resource_id="r4"),
)


def add(
    contact: str = ANN, channel: str = "email", resource: ResourceState = RESOURCE, **kw: Any
) -> AddSubscription:
    return AddSubscription(
        resource_id=kw.pop("resource_id", resource.resource_id),
        channel=channel,
        contact=contact,
        at=kw.pop("at", AT),
        resource=resource,
        **kw,
    )


def ids(
    contact: str = ANN, channel: str = "email", resource_id: str = "r1", provider: str | None = None
) -> dict[str, Any]:
    return {
        "profile_id": "p1",
        "database_id": "db1",
        "resource_id": resource_id,
        "channel": channel,
        "contact": contact,
        "provider": provider,
    }


def added(
    contact: str = ANN, channel: str = "email", resource_id: str = "r1", **kw: Any
) -> SubscriptionAdded:
    provider = kw.pop("provider", None)
    payload: dict[str, Any] = {
        "status": Status.SUBSCRIBED,
        "priority": 0,
        "registered_at": AT,
        "cause": Cause.API,
    }
    if channel == "email":
        payload["email_domain"] = contact.rsplit("@", 1)[1]
        payload["email_md5"] = hashlib.md5(contact.encode()).hexdigest()
    return SubscriptionAdded(**ids(contact, channel, resource_id, provider), **{**payload, **kw})


def status_changed(
    before: Status, after: Status, cause: Cause, contact: str = ANN
) -> SubscriptionStatusChanged:
    return SubscriptionStatusChanged(**ids(contact), from_status=before, to_status=after, cause=cause)


def priority_changed(before: int, after: int, contact: str = ANN, **kw: Any) -> SubscriptionPriorityChanged:
    return SubscriptionPriorityChanged(**ids(contact, **kw), from_priority=before, to_priority=after)


def category_changed(category: str, before: CategoryStatus, after: CategoryStatus, cause: Cause) -> Event:
    return CategorySubscriptionChanged(
        **ids(), category=category, from_status=before, to_status=after, cause=cause
    )


SMS_ADDED = added(PHONE, "sms", fields={"store": "Riga", "visits": 0})
U, S = CategoryStatus.UNSUBSCRIBED, CategoryStatus.SUBSCRIBED

ADDING: list[tuple[str, list[Event], AddSubscription, list[Event]]] = [
    ("a new email subscription", [], add(), [added()]),
    ("the address is normalised and lower-cased", [], add(" Ann@EXAMPLE.com "), [added()]),
    (
        "the time is kept in UTC",
        [],
        add(at=AT.astimezone(timezone(timedelta(hours=3)))),
        [added()],
    ),
    (
        "double opt-in starts unconfirmed",
        [],
        add(status=Status.UNCONFIRMED, cause=Cause.FORM),
        [added(status=Status.UNCONFIRMED, cause=Cause.FORM)],
    ),
    (
        "an import may add any status",
        [],
        add(status=Status.HARD_BOUNCED, cause=Cause.IMPORT),
        [added(status=Status.HARD_BOUNCED, cause=Cause.IMPORT)],
    ),
    ("the registration IP is proof", [], add(ip=" 203.0.113.7 "), [added(ip="203.0.113.7")]),
    ("an sms subscription in E.164", [], add("79123456789", "sms", fields={"store": "Riga"}), [SMS_ADDED]),
    (
        "a whatsapp subscription by phone",
        [],
        add("+7 912 345-67-89", "whatsapp"),
        [added(PHONE, "whatsapp")],
    ),
    ("a push subscription", [], add(TOKEN, "push", provider="fcm"), [added(TOKEN, "push", provider="fcm")]),
    ("a telegram subscription", [], add(" 123456 ", "telegram_bot"), [added("123456", "telegram_bot")]),
    (
        "custom fields get defaults and coerced values",
        [],
        add(PHONE, "sms", fields={"store": "Riga", "visits": "7"}),
        [added(PHONE, "sms", fields={"store": "Riga", "visits": 7})],
    ),
    (
        "device fields in the guide's spellings",
        [],
        add(
            device={
                "platform": "iOS",
                "browser": "Internet Explorer",
                "ads_allowed": "true",
                "app_version": 3,
            }
        ),
        [
            added(
                device=Device(
                    platform=DevicePlatform.IOS,
                    browser=Browser.INTERNET_EXPLORER,
                    ads_allowed=True,
                    app_version="3",
                )
            )
        ],
    ),
    (
        "category choices",
        [],
        add(categories={"promo": U, "news": S}),
        [added(categories={"promo": U, "news": S})],
    ),
    ("a second contact queues after the first", [added()], add(BOB), [added(BOB, priority=1)]),
    (
        "queues after the lowest priority",
        [added(), added(BOB, priority=4)],
        add("cy@example.com"),
        [added("cy@example.com", priority=5)],
    ),
    ("an explicit priority", [added()], add(BOB, priority=0), [added(BOB, priority=0)]),
    (
        "raise priority: the new contact becomes 0 and the others move down",
        [
            added(resource_id="r2"),
            added(BOB, resource_id="r2", priority=1),
            added(PHONE, "sms", "r2", fields={"store": "x", "visits": 0}),
        ],
        add("cy@example.com", resource=RAISING),
        [
            added("cy@example.com", resource_id="r2"),
            priority_changed(0, 1, resource_id="r2"),
            priority_changed(1, 2, BOB, resource_id="r2"),
        ],
    ),
    (
        "raise priority leaves other resources alone",
        [added()],
        add(BOB, resource=RAISING),
        [added(BOB, resource_id="r2")],
    ),
    (
        "raise priority does not apply to an explicit priority",
        [added(resource_id="r2")],
        add(BOB, resource=RAISING, priority=3),
        [added(BOB, resource_id="r2", priority=3)],
    ),
    ("re-adding changes nothing", [added()], add(), []),
    ("re-adding does not resurrect", [added(status=Status.UNSUBSCRIBED)], add(), []),
    (
        "re-adding with a status changes it",
        [added(status=Status.UNSUBSCRIBED)],
        add(status=Status.SUBSCRIBED),
        [status_changed(Status.UNSUBSCRIBED, Status.SUBSCRIBED, Cause.API)],
    ),
    (
        "a double opt-in sign-up keeps a confirmed contact subscribed",
        [added()],
        add(status=Status.UNCONFIRMED, cause=Cause.FORM),
        [],
    ),
    (
        "a double opt-in sign-up after unsubscribing",
        [added(status=Status.UNSUBSCRIBED)],
        add(status=Status.UNCONFIRMED, cause=Cause.FORM),
        [status_changed(Status.UNSUBSCRIBED, Status.UNCONFIRMED, Cause.FORM)],
    ),
    (
        "re-adding with a priority",
        [added(), added(BOB, priority=1)],
        add(BOB, priority=0),
        [priority_changed(1, 0, BOB)],
    ),
    (
        "re-adding with a raising resource keeps the priority",
        [added(resource_id="r2", priority=2)],
        add(resource=RAISING),
        [],
    ),
    (
        "re-adding merges fields",
        [SMS_ADDED],
        add(PHONE, "sms", fields={"visits": 2}),
        [
            SubscriptionFieldsUpdated(
                **ids(PHONE, "sms"), fields={"store": "Riga", "visits": 2}, device=Device()
            )
        ],
    ),
    (
        "re-adding merges categories",
        [added(categories={"promo": U})],
        add(categories={"promo": U, "news": U}, cause=Cause.SUBSCRIPTION_MANAGER),
        [category_changed("news", S, U, Cause.SUBSCRIPTION_MANAGER)],
    ),
    (
        "re-adding reports every change",
        [added(status=Status.SUSPENDED)],
        add(status=Status.SUBSCRIBED, priority=2, device={"device_type": "Mobile"}, categories={"promo": U}),
        [
            status_changed(Status.SUSPENDED, Status.SUBSCRIBED, Cause.API),
            priority_changed(0, 2),
            SubscriptionFieldsUpdated(**ids(), fields={}, device=Device(device_type="mobile")),
            category_changed("promo", S, U, Cause.API),
        ],
    ),
]


@pytest.mark.parametrize(("given", "when", "expected"), [c[1:] for c in ADDING], ids=[c[0] for c in ADDING])
def test_adding(given: list[Event], when: AddSubscription, expected: list[Event]) -> None:
    assert then(subscriptions, given, when) == expected


ADD_ERRORS: list[tuple[str, list[Event], AddSubscription, type[DomainError], str]] = [
    (
        "a resource that does not exist",
        [],
        add(resource=ResourceState(), resource_id="r9"),
        NotFound,
        "resource_id",
    ),
    ("a deleted resource", [], add(PHONE, "sms", resource=DELETED), NotFound, "resource_id"),
    ("a snapshot of another resource", [], add(resource_id="r2"), NotFound, "resource_id"),
    (
        "a resource for another database",
        [],
        add(PHONE, "sms", resource=OTHER_DB),
        RuleViolated,
        "resource_id",
    ),
    ("a channel the resource lacks", [], add("123", "viber"), RuleViolated, "channel"),
    ("a bad email", [], add("ann@"), ValidationFailed, "contact"),
    (
        "a phone without its country code",
        [],
        add("12", "sms", fields={"store": "x"}),
        ValidationFailed,
        "contact",
    ),
    ("a blank token", [], add(" ", "push", provider="fcm"), ValidationFailed, "contact"),
    ("a push subscription without provider", [], add(TOKEN, "push"), ValidationFailed, "provider"),
    ("an unknown push provider", [], add(TOKEN, "push", provider="pigeon"), ValidationFailed, "provider"),
    (
        "a provider the resource does not use",
        [],
        add(TOKEN, "push", provider="apns"),
        RuleViolated,
        "provider",
    ),
    ("a provider on email", [], add(provider="fcm"), ValidationFailed, "provider"),
    ("a negative priority", [], add(priority=-1), ValidationFailed, "priority"),
    ("a required field missing", [], add(PHONE, "sms"), ValidationFailed, "fields.store"),
    (
        "a field of the wrong type",
        [],
        add(PHONE, "sms", fields={"store": "x", "visits": "lots"}),
        ValidationFailed,
        "fields.visits",
    ),
    ("an unknown field", [], add(fields={"colour": "red"}), ValidationFailed, "fields.colour"),
    (
        "an unknown device platform",
        [],
        add(device={"platform": "amiga"}),
        ValidationFailed,
        "device.platform",
    ),
    ("an unknown device field", [], add(device={"colour": "red"}), ValidationFailed, "device.colour"),
    (
        "a device name too long",
        [],
        add(device={"device_name": "x" * 256}),
        ValidationFailed,
        "device.device_name",
    ),
    ("an unknown category", [], add(categories={"sport": U}), NotFound, "categories.sport"),
    (
        "unsubscribing a mandatory category",
        [],
        add(categories={"transactions": U}),
        RuleViolated,
        "categories.transactions",
    ),
    ("a bad IP", [], add(ip="300.1.1.1"), ValidationFailed, "ip"),
    ("an IPv6 IP", [], add(ip="2001:db8::1"), ValidationFailed, "ip"),
    (
        "a complaint does not add",
        [],
        add(cause=Cause.COMPLAINT, status=Status.COMPLAINER),
        RuleViolated,
        "status",
    ),
    ("a form adds only opt-ins", [], add(cause=Cause.FORM, status=Status.SUSPENDED), RuleViolated, "status"),
    (
        "a form does not bring back a complainer",
        [added(status=Status.COMPLAINER)],
        add(cause=Cause.FORM, status=Status.SUBSCRIBED),
        RuleViolated,
        "status",
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "error", "path"), [c[1:] for c in ADD_ERRORS], ids=[c[0] for c in ADD_ERRORS]
)
def test_adding_errors(
    given: list[Event], when: AddSubscription, error: type[DomainError], path: str
) -> None:
    then_error(subscriptions, given, when, error, path)


# --- status transitions ----------------------------------------------------------------------

SUB, UNSUB, COMPL, HARD, UNCONF, SUSP, INVAL = (
    Status.SUBSCRIBED,
    Status.UNSUBSCRIBED,
    Status.COMPLAINER,
    Status.HARD_BOUNCED,
    Status.UNCONFIRMED,
    Status.SUSPENDED,
    Status.INVALID,
)
CHANGES, NOTHING, REFUSED = "changes", "nothing", "refused"

TRANSITION_CASES: list[tuple[Cause, Status, Status, str]] = [
    (Cause.MANUAL, SUB, UNSUB, CHANGES),
    (Cause.MANUAL, COMPL, SUB, CHANGES),
    (Cause.MANUAL, SUB, UNCONF, CHANGES),
    (Cause.MANUAL, SUB, SUB, NOTHING),
    (Cause.API, INVAL, SUSP, CHANGES),
    (Cause.IMPORT, HARD, SUB, CHANGES),
    (Cause.MASS_UPDATE, SUB, INVAL, CHANGES),
    (Cause.UNSUBSCRIBE_LINK, SUB, UNSUB, CHANGES),
    (Cause.UNSUBSCRIBE_LINK, UNCONF, UNSUB, CHANGES),
    (Cause.UNSUBSCRIBE_LINK, SUSP, UNSUB, CHANGES),
    (Cause.UNSUBSCRIBE_LINK, UNSUB, UNSUB, NOTHING),
    (Cause.UNSUBSCRIBE_LINK, COMPL, UNSUB, NOTHING),
    (Cause.UNSUBSCRIBE_LINK, HARD, UNSUB, NOTHING),
    (Cause.UNSUBSCRIBE_LINK, INVAL, UNSUB, NOTHING),
    (Cause.UNSUBSCRIBE_LINK, UNSUB, SUB, REFUSED),
    (Cause.LIST_UNSUBSCRIBE, SUB, UNSUB, CHANGES),
    (Cause.LIST_UNSUBSCRIBE, SUB, SUSP, REFUSED),
    (Cause.SUBSCRIPTION_MANAGER, UNSUB, SUB, CHANGES),
    (Cause.SUBSCRIPTION_MANAGER, SUSP, SUB, CHANGES),
    (Cause.SUBSCRIPTION_MANAGER, SUB, UNSUB, CHANGES),
    (Cause.SUBSCRIPTION_MANAGER, UNSUB, UNCONF, CHANGES),
    (Cause.SUBSCRIPTION_MANAGER, SUB, UNCONF, NOTHING),
    (Cause.SUBSCRIPTION_MANAGER, COMPL, SUB, REFUSED),
    (Cause.SUBSCRIPTION_MANAGER, COMPL, UNSUB, NOTHING),
    (Cause.SUBSCRIPTION_MANAGER, SUB, INVAL, REFUSED),
    (Cause.FORM, UNCONF, SUB, CHANGES),
    (Cause.FORM, HARD, SUB, REFUSED),
    (Cause.COMPLAINT, SUB, COMPL, CHANGES),
    (Cause.COMPLAINT, UNSUB, COMPL, CHANGES),
    (Cause.COMPLAINT, HARD, COMPL, CHANGES),
    (Cause.COMPLAINT, COMPL, COMPL, NOTHING),
    (Cause.COMPLAINT, SUB, UNSUB, REFUSED),
    (Cause.HARD_BOUNCE, SUB, HARD, CHANGES),
    (Cause.HARD_BOUNCE, UNCONF, HARD, CHANGES),
    (Cause.HARD_BOUNCE, COMPL, HARD, CHANGES),
    (Cause.HARD_BOUNCE, SUB, INVAL, REFUSED),
    (Cause.DOI_CONFIRMED, UNCONF, SUB, CHANGES),
    (Cause.DOI_CONFIRMED, UNSUB, SUB, REFUSED),
    (Cause.DOI_CONFIRMED, UNCONF, UNSUB, REFUSED),
]


@pytest.mark.parametrize(
    ("cause", "before", "after", "outcome"),
    TRANSITION_CASES,
    ids=[f"{c.value}: {b.value} to {a.value} {o}" for c, b, a, o in TRANSITION_CASES],
)
def test_status_transitions(cause: Cause, before: Status, after: Status, outcome: str) -> None:
    given = [added(status=before, cause=Cause.IMPORT)]
    when = ChangeSubscriptionStatus(
        resource_id="r1", channel="email", contact=ANN, at=AT, status=after, cause=cause
    )
    if outcome == REFUSED:
        then_error(subscriptions, given, when, RuleViolated, "status")
    else:
        expected = [status_changed(before, after, cause)] if outcome == CHANGES else []
        assert then(subscriptions, given, when) == expected


def test_every_cause_has_its_rules() -> None:
    assert set(TRANSITIONS) == set(Cause)


def confirm(contact: str = ANN) -> ConfirmSubscription:
    return ConfirmSubscription(resource_id="r1", channel="email", contact=contact, at=AT)


def test_double_opt_in_confirmation() -> None:
    given = [added(status=UNCONF, cause=Cause.FORM)]
    assert then(subscriptions, given, confirm()) == [status_changed(UNCONF, SUB, Cause.DOI_CONFIRMED)]


def test_confirming_twice_changes_nothing() -> None:
    given = [added(status=UNCONF, cause=Cause.FORM), status_changed(UNCONF, SUB, Cause.DOI_CONFIRMED)]
    assert then(subscriptions, given, confirm()) == []


def test_confirming_an_unsubscribed_subscription_is_refused() -> None:
    then_error(subscriptions, [added(status=UNSUB)], confirm(), RuleViolated, "status")


# --- priority, fields, categories, removal ----------------------------------------------------


def target(command: type[Any], contact: str = ANN, channel: str = "email", **kw: Any) -> Any:
    return command(resource_id="r1", channel=channel, contact=contact, at=AT, **kw)


OTHERS: list[tuple[str, list[Event], Any, list[Event]]] = [
    (
        "change the priority",
        [added(), added(BOB, priority=1)],
        target(ChangeSubscriptionPriority, BOB, priority=0),
        [priority_changed(1, 0, BOB)],
    ),
    ("the same priority", [added()], target(ChangeSubscriptionPriority, priority=0), []),
    (
        "update custom fields",
        [SMS_ADDED],
        target(UpdateSubscriptionFields, PHONE, "sms", resource=RESOURCE, fields={"visits": 5}),
        [
            SubscriptionFieldsUpdated(
                **ids(PHONE, "sms"), fields={"store": "Riga", "visits": 5}, device=Device()
            )
        ],
    ),
    (
        "update device fields and clear one",
        [added(device=Device(device_model="Pixel", platform=DevicePlatform.ANDROID))],
        target(
            UpdateSubscriptionFields, resource=RESOURCE, device={"device_model": "", "app_id": "com.shop"}
        ),
        [
            SubscriptionFieldsUpdated(
                **ids(), fields={}, device=Device(platform=DevicePlatform.ANDROID, app_id="com.shop")
            )
        ],
    ),
    (
        "update fields to what they are",
        [SMS_ADDED],
        target(UpdateSubscriptionFields, PHONE, "sms", resource=RESOURCE, fields={"store": "Riga"}),
        [],
    ),
    (
        "unsubscribe from a category",
        [added()],
        target(
            ChangeCategorySubscription,
            resource=RESOURCE,
            categories={"promo": U},
            cause=Cause.UNSUBSCRIBE_LINK,
        ),
        [category_changed("promo", S, U, Cause.UNSUBSCRIBE_LINK)],
    ),
    (
        "resubscribe to a category",
        [added(categories={"promo": U})],
        target(ChangeCategorySubscription, resource=RESOURCE, categories={"promo": S}),
        [category_changed("promo", U, S, Cause.MANUAL)],
    ),
    (
        "several categories, one already as asked",
        [added()],
        target(
            ChangeCategorySubscription,
            resource=RESOURCE,
            categories={"promo": U, "news": U, "transactions": S},
        ),
        [category_changed("promo", S, U, Cause.MANUAL), category_changed("news", S, U, Cause.MANUAL)],
    ),
    ("remove", [added()], target(RemoveSubscription), [SubscriptionRemoved(**ids())]),
    ("add again after removal", [added(), SubscriptionRemoved(**ids())], add(BOB), [added(BOB)]),
]


@pytest.mark.parametrize(("given", "when", "expected"), [c[1:] for c in OTHERS], ids=[c[0] for c in OTHERS])
def test_other_commands(given: list[Event], when: Any, expected: list[Event]) -> None:
    assert then(subscriptions, given, when) == expected


OTHER_ERRORS: list[tuple[str, list[Event], Any, type[DomainError], str]] = [
    (
        "status of a missing subscription",
        [],
        target(ChangeSubscriptionStatus, status=UNSUB),
        NotFound,
        "contact",
    ),
    ("confirm a missing subscription", [added()], confirm(BOB), NotFound, "contact"),
    (
        "priority of a missing subscription",
        [],
        target(ChangeSubscriptionPriority, priority=1),
        NotFound,
        "contact",
    ),
    (
        "a negative priority",
        [added()],
        target(ChangeSubscriptionPriority, priority=-2),
        ValidationFailed,
        "priority",
    ),
    ("remove a missing subscription", [], target(RemoveSubscription), NotFound, "contact"),
    (
        "the same address on another channel",
        [added()],
        target(RemoveSubscription, channel="sms", contact="+79000000001"),
        NotFound,
        "contact",
    ),
    (
        "a Telegram contact that is no chat id",
        [],
        target(RemoveSubscription, channel="telegram_bot"),
        ValidationFailed,
        "contact",
    ),
    ("a bad contact", [added()], target(RemoveSubscription, "not-an-email"), ValidationFailed, "contact"),
    (
        "fields of a missing subscription",
        [],
        target(UpdateSubscriptionFields, resource=RESOURCE, fields={"x": 1}),
        NotFound,
        "contact",
    ),
    (
        "fields on a deleted resource",
        [added(PHONE, "sms", "r4")],
        UpdateSubscriptionFields(resource_id="r4", channel="sms", contact=PHONE, at=AT, resource=DELETED),
        NotFound,
        "resource_id",
    ),
    (
        "clearing a required field",
        [SMS_ADDED],
        target(UpdateSubscriptionFields, PHONE, "sms", resource=RESOURCE, fields={"store": None}),
        ValidationFailed,
        "fields.store",
    ),
    (
        "a bad device value",
        [added()],
        target(UpdateSubscriptionFields, resource=RESOURCE, device={"ads_allowed": "maybe"}),
        ValidationFailed,
        "device.ads_allowed",
    ),
    (
        "unsubscribing a mandatory category",
        [added()],
        target(
            ChangeCategorySubscription, resource=RESOURCE, categories={"transactions": U}, cause=Cause.MANUAL
        ),
        RuleViolated,
        "categories.transactions",
    ),
    (
        "an unknown category",
        [added()],
        target(ChangeCategorySubscription, resource=RESOURCE, categories={"sport": U}),
        NotFound,
        "categories.sport",
    ),
    (
        "categories of another resource's snapshot",
        [added()],
        target(ChangeCategorySubscription, resource=RAISING, categories={"promo": U}),
        NotFound,
        "resource_id",
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "error", "path"), [c[1:] for c in OTHER_ERRORS], ids=[c[0] for c in OTHER_ERRORS]
)
def test_other_errors(given: list[Event], when: Any, error: type[DomainError], path: str) -> None:
    then_error(subscriptions, given, when, error, path)


# --- the state -------------------------------------------------------------------------------


def test_state_follows_the_events() -> None:
    subs = subscriptions.fold(
        [
            added(ip="203.0.113.7"),
            added(BOB, priority=1),
            added(TOKEN, "push", provider="fcm"),
            status_changed(SUB, UNSUB, Cause.UNSUBSCRIBE_LINK, BOB),
            priority_changed(1, 0, BOB),
            priority_changed(0, 1),
            category_changed("promo", S, U, Cause.MANUAL),
            SubscriptionFieldsUpdated(**ids(), fields={}, device=Device(device_name="Ann's laptop")),
        ]
    )
    ann = subs.get(SubscriptionKey("r1", "email", ANN))
    bob = subs.get(SubscriptionKey("r1", "email", BOB))
    assert ann is not None and bob is not None
    assert (ann.status, ann.priority, ann.ip, ann.registered_at) == (SUB, 1, "203.0.113.7", AT)
    assert ann.email_domain == "example.com" and ann.email_md5 == hashlib.md5(ANN.encode()).hexdigest()
    assert ann.category_status("promo") is U and ann.category_status("news") is S
    assert ann.device == Device(device_name="Ann's laptop")
    assert (bob.status, bob.priority) == (UNSUB, 0)
    assert [s.key.contact for s in subs.of_resource("r1", "email")] == [BOB, ANN]
    assert subs.get(SubscriptionKey("r1", "push", TOKEN, "fcm")) is not None
    assert subs.get(SubscriptionKey("r1", "push", TOKEN)) is None
    assert len(subs) == 3
    assert list(contacts(subs)) == [("email", ANN), ("email", BOB), ("push", TOKEN)]


def test_removal_forgets_the_subscription() -> None:
    subs = subscriptions.fold([added(), SubscriptionRemoved(**ids())])
    assert len(subs) == 0 and list(contacts(subs)) == []


def test_events_for_unknown_subscriptions_change_nothing() -> None:
    subs = subscriptions.fold([added()])
    for event in (
        status_changed(SUB, UNSUB, Cause.MANUAL, BOB),
        category_changed("promo", S, U, Cause.MANUAL),
    ):
        assert evolve_subscriptions(SubscriptionsState(), event) == SubscriptionsState()
    assert evolve_subscriptions(subs, SubscriptionRemoved(**ids(BOB))) == subs


def test_other_events_leave_the_state_alone() -> None:
    class Unrelated(Event):
        pass

    subs = subscriptions.fold([added()])
    assert evolve_subscriptions(subs, Unrelated()) is subs


ALL_EVENTS: list[Event] = [
    added(
        ip="203.0.113.7", device=Device(browser=Browser.CHROME, ads_allowed=False), categories={"promo": U}
    ),
    SMS_ADDED,
    added(TOKEN, "push", provider="fcm"),
    status_changed(UNCONF, SUB, Cause.DOI_CONFIRMED),
    priority_changed(0, 1),
    SubscriptionFieldsUpdated(
        **ids(PHONE, "sms"), fields={"store": "Riga", "visits": 2, "ratio": 0.5, "vip": True}, device=Device()
    ),
    category_changed("promo", S, U, Cause.LIST_UNSUBSCRIBE),
    SubscriptionRemoved(**ids()),
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: e.type_name)
def test_events_survive_the_store(event: Event) -> None:
    assert registry.decode(event.type_name, event.schema_version, event.to_data()) == event


def test_every_event_names_its_profile_and_subscription() -> None:
    assert {type(e) for e in ALL_EVENTS} == set(SUBSCRIPTION_EVENTS)
    for event in ALL_EVENTS:
        data = event.to_data()
        assert {"profile_id", "database_id", "resource_id", "channel", "contact"} <= set(data)
