"""How profiles get into a scenario: its capture condition ("Условие захвата") and what it matches.

A scenario watches one profile database and captures its profiles on one kind of event
(`kind`), the guide's "Событие" list (the same as trigger campaigns'):

- `api` ("При использовании особого вызова API"): the scenario's entry call names the profile,
  with free JSON `content`;
- `subscription` ("При добавлении/изменении подписки"): a subscription is added or its status
  changes (optionally of one resource, one channel, to some statuses);
- `import` ("При импорте через API" / "вручную" / "При любом импорте"): an import creates or changes
  the profile (`via`: api, manual or any);
- `message_action` ("При выполнении выбранного действия"): the profile acts on a message:
  delivered, opened, read, clicked (optionally a named link), unsubscribed, complained, bounced, or
  confirmed a double opt-in ("Клик на Confirm ссылку");
- `field_changed` ("Когда какое-либо поле изменено"): a profile field changes (any, or one named);
- `pixel` ("Когда пиксель активирован"): a pixel fires or a goal is reached (optionally one pixel,
  one goal);
- `event`: a tracked event of that name whose properties pass the filter;
- `schedule` ("По расписанию и сегменту"): a schedule's run finds the profile in the segment query
  (with a percent window).

"Отправить профили в сценарий" (manual entry, by ids or a segment) works whatever the capture.

Decisions where the guide is silent:
- Import sources: `api` is the single-profile upsert (`source` "api"); `manual` is the batch
  import and a profile created by hand (`source` "import", "manual"); an import's update counts
  when it changed something. A field edit that is no import (by hand, a scoring rule, a scenario's
  update-data node, a link: `UpdateProfile`) is a field change, not an import. Profiles created by
  tracking, links or scenarios are not imports.
- "A field changed" is a change of the profile's fields by a user, the API, an import or a link
  (`ProfileFieldsUpdated`); what tracking records of the last visit (`_ip`, `_city`…) is not.
- Message actions come from real recipients only: bot hits and test messages never capture.
- The special API call works only for a scenario whose capture is `api` (its content is part
  of the contract); manual entry works for every scenario.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from herald.domain.content_filter import ContentFilter, holds
from herald.domain.deliveries import (
    ComplaintReceived,
    LinkClicked,
    MessageDelivered,
    MessageHardBounced,
    MessageOpened,
    MessageRead,
    MessageUnsubscribed,
)
from herald.domain.events import Event
from herald.domain.profiles import ProfileCreated, ProfileFieldsUpdated
from herald.domain.schedules import Schedule
from herald.domain.segments import Group, PercentLimit, Rule
from herald.domain.statuses import Status
from herald.domain.subscriptions import Cause as SubscriptionCause
from herald.domain.subscriptions import SubscriptionAdded, SubscriptionStatusChanged
from herald.domain.tracking import ActivityTracked, goal_of

CaptureKind = Literal["api", "subscription", "import", "message_action", "field_changed", "pixel", "event"]
ImportVia = Literal["api", "manual", "any"]
Action = Literal[
    "delivered", "opened", "read", "clicked", "unsubscribed", "complained", "bounced", "confirmed"
]
IMPORT_SOURCES: Mapping[str, ImportVia] = {"api": "api", "import": "manual", "manual": "manual"}
UPDATE_IMPORT_SOURCES: Mapping[str, ImportVia] = {"api": "api", "import": "manual"}
"""The sources of a `ProfileFieldsUpdated` an import made (an edit's `UpdateProfile` says "manual")."""


class _Capture(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApiCapture(_Capture):
    kind: Literal["api"] = "api"


class SubscriptionCapture(_Capture):
    kind: Literal["subscription"] = "subscription"
    resource_id: str | None = Field(None, description="None: any resource")
    channel: str | None = Field(None, description="None: any channel")
    statuses: tuple[Status, ...] = Field(
        (), description="the status it was added with or changed to; empty: any"
    )


class ImportCapture(_Capture):
    kind: Literal["import"] = "import"
    via: ImportVia = "any"


class MessageActionCapture(_Capture):
    kind: Literal["message_action"] = "message_action"
    action: Action
    link_name: str | None = Field(None, description="clicked: the link's name; None: any link")
    campaign_ids: tuple[str, ...] = Field((), description="the messages' campaigns; empty: any")


class FieldChangedCapture(_Capture):
    kind: Literal["field_changed"] = "field_changed"
    field: str | None = Field(None, description="None: any field")


class PixelCapture(_Capture):
    kind: Literal["pixel"] = "pixel"
    pixel_id: str | None = Field(None, description="None: any pixel")
    goal: str | None = Field(None, description="None: any goal")


class EventCapture(_Capture):
    kind: Literal["event"] = "event"
    name: str
    filter: ContentFilter = Field(default_factory=ContentFilter, description="on the event's properties")


class ScheduleCapture(_Capture):
    """The audience mode: at each run of `schedule`, the profiles the query selects now enter."""

    kind: Literal["schedule"] = "schedule"
    schedule: Schedule
    condition: Literal["and", "or"] = "and"
    rules: tuple[Rule, ...] = ()
    groups: tuple[Group, ...] = ()
    limit: PercentLimit | None = Field(None, description="the percent window (От % / До %)")


Capture = Annotated[
    ApiCapture
    | SubscriptionCapture
    | ImportCapture
    | MessageActionCapture
    | FieldChangedCapture
    | PixelCapture
    | EventCapture
    | ScheduleCapture,
    Field(discriminator="kind"),
]


@dataclass(frozen=True, slots=True)
class CaptureFact:
    """Something a profile did or had done to it, read from an event, for matching captures."""

    kind: CaptureKind
    database_id: str
    profile_id: str
    import_via: ImportVia | None = None
    resource_id: str = ""
    channel: str = ""
    status: Status | None = None
    action: Action | None = None
    link_name: str = ""
    campaign_id: str = ""
    fields: frozenset[str] = frozenset()
    pixel_id: str = ""
    goal: str = ""
    name: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict)


def captures(capture: Capture, fact: CaptureFact) -> bool:
    """Whether `fact` captures the profile for a scenario with `capture` (its database checked apart)."""
    match capture:
        case SubscriptionCapture() if fact.kind == "subscription":
            return (
                capture.resource_id in (None, fact.resource_id)
                and capture.channel in (None, fact.channel)
                and (not capture.statuses or fact.status in capture.statuses)
            )
        case ImportCapture() if fact.kind == "import":
            return capture.via in ("any", fact.import_via)
        case MessageActionCapture() if fact.kind == "message_action":
            return (
                capture.action == fact.action
                and capture.link_name in (None, fact.link_name)
                and (not capture.campaign_ids or fact.campaign_id in capture.campaign_ids)
            )
        case FieldChangedCapture() if fact.kind == "field_changed":
            return capture.field is None or capture.field in fact.fields
        case PixelCapture() if fact.kind == "pixel":
            return capture.pixel_id in (None, fact.pixel_id) and capture.goal in (None, fact.goal)
        case EventCapture() if fact.kind == "event":
            return capture.name == fact.name and holds(capture.filter, fact.properties)
    return False


# --- reading facts from events --------------------------------------------------------------

_ActionEvent = (
    MessageDelivered
    | MessageOpened
    | MessageRead
    | LinkClicked
    | MessageUnsubscribed
    | ComplaintReceived
    | MessageHardBounced
)
_ACTIONS: Mapping[type[Event], Action] = {
    MessageDelivered: "delivered",
    MessageOpened: "opened",
    MessageRead: "read",
    LinkClicked: "clicked",
    MessageUnsubscribed: "unsubscribed",
    ComplaintReceived: "complained",
    MessageHardBounced: "bounced",
}
FACT_EVENT_TYPES = frozenset(
    {
        "ProfileCreated",
        "ProfileFieldsUpdated",
        "SubscriptionAdded",
        "SubscriptionStatusChanged",
        "ActivityTracked",
    }
    | {kind.type_name for kind in _ACTIONS}
)
"""The event types a capture can come from (`facts_of` reads nothing from others)."""


def facts_of(event: Event) -> tuple[CaptureFact, ...]:
    """The capture facts an event records (none for most events)."""
    match event:
        case ProfileCreated():
            via = IMPORT_SOURCES.get(event.source)
            if via is None:
                return ()
            return (CaptureFact("import", event.database_id, event.profile_id, import_via=via),)
        case ProfileFieldsUpdated():
            changed = CaptureFact(
                "field_changed", event.database_id, event.profile_id, fields=frozenset(event.changes)
            )
            via = UPDATE_IMPORT_SOURCES.get(event.source)
            imported = (
                ()
                if via is None
                else (CaptureFact("import", event.database_id, event.profile_id, import_via=via),)
            )
            return (changed, *imported)
        case SubscriptionAdded() | SubscriptionStatusChanged():
            return _subscription_facts(event)
        case ActivityTracked() if event.profile_id is not None:
            return _tracked_facts(event, event.profile_id)
    if isinstance(event, _ActionEvent) and not event.is_test and not getattr(event, "bot", False):
        return (
            CaptureFact(
                "message_action",
                event.database_id,
                event.profile_id,
                action=_ACTIONS[type(event)],
                link_name=event.link_name if isinstance(event, LinkClicked) else "",
                campaign_id=event.campaign_id,
            ),
        )
    return ()


def _subscription_facts(event: SubscriptionAdded | SubscriptionStatusChanged) -> tuple[CaptureFact, ...]:
    status = event.status if isinstance(event, SubscriptionAdded) else event.to_status
    fact = CaptureFact(
        "subscription",
        event.database_id,
        event.profile_id,
        resource_id=event.resource_id,
        channel=event.channel,
        status=status,
    )
    if isinstance(event, SubscriptionStatusChanged) and event.cause is SubscriptionCause.DOI_CONFIRMED:
        confirmed = CaptureFact("message_action", event.database_id, event.profile_id, action="confirmed")
        return (fact, confirmed)
    return (fact,)


def _tracked_facts(event: ActivityTracked, profile_id: str) -> tuple[CaptureFact, ...]:
    tracked = CaptureFact(
        "event", event.database_id, profile_id, name=event.name, properties=event.properties
    )
    goal = goal_of(event)
    if goal is None:
        return (tracked,)
    pixel = CaptureFact("pixel", event.database_id, profile_id, pixel_id=goal.pixel_id, goal=goal.goal)
    return (tracked, pixel)
