"""Campaigns: create, read, change, the state actions, triggers, tests, progress and the calendar.

Decisions where the guide is silent:
- `PUT /campaigns/{id}` replaces the settings whole; the type cannot change.
- State actions are `POST /campaigns/{id}/<action>` with no body: activate,
  deactivate, launch (now, outside the schedule), pause, resume.
- `POST /campaigns/{id}/fire` takes up to 1,000 profiles, each a one-field
  selector (`{"profile_id": ...}`, `{"email": ...}`, `{"phone": ...}` or a
  unique field), optional `content` for the template's `json.*`, and an
  optional `request_id` (or the Idempotency-Key header): the same request id
  never sends twice. Each profile's answer says queued (with the due time) or
  why not; a repeated request id answers `duplicate`, with the first answer.
- A trigger saved without `trigger` options gets the guide's defaults: no
  delay, normal priority, fired by API calls only.
- "Why didn't X get it" (`GET /campaigns/{id}/recipients/{profile_id}`) lists
  the campaign's decisions for the profile; with none, it says whether the
  profile is in the audience and why not (another database, no subscription
  on the channel, not in the segment, not fired yet, not reached yet); an
  unknown profile is 404.
- The calendar lists launches that happened and runs that are due, per day
  in the account's time zone.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from herald.api.endpoints import Call, Endpoint
from herald.api.routes.catalog import VersionQuery, by_id, expected_version_field
from herald.domain import campaigns as cp
from herald.domain import sending_policies as sp
from herald.domain.errors import ValidationFailed

MAX_FIRED = 1000
MAX_UPCOMING = 100


class CampaignBody(cp.CampaignSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")
    expected_version: int | None = expected_version_field()


class FireBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profiles: list[dict[str, JsonValue]] = Field(min_length=1, max_length=MAX_FIRED)
    content: dict[str, JsonValue] | None = Field(
        None, description="the template's `json.*` for these messages"
    )
    request_id: str | None = Field(None, max_length=200, description="the same id never sends twice")


class TestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile_ids: list[str] = Field(min_length=1, max_length=20, description="test profiles to send to")


class WinnerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template_id: str


class UpcomingQuery(BaseModel):
    count: int = Field(12, ge=1, le=MAX_UPCOMING)


class CalendarQuery(BaseModel):
    start: date
    end: date


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    policy: sp.SendingPolicy


class PolicyPut(PolicyBody):
    expected_version: int | None = expected_version_field()


class AccountPolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy_id: str | None


def _settings(body: CampaignBody) -> cp.CampaignSettings:
    return cp.CampaignSettings.model_validate(body.model_dump(exclude={"expected_version"}))


def _campaign_json(call: Call, state: cp.CampaignState) -> dict[str, Any]:
    run = state.current_run
    return {
        "campaign_id": state.campaign_id,
        **cp.existing_settings(state).model_dump(mode="json"),
        "status": str(state.status),
        "next_run_at": state.next_run.due_at.isoformat() if state.next_run else None,
        "current_run": dataclasses.asdict(run) if run else None,
        "current_limit": state.current_limit,
        "winner_template_id": state.winner_template_id,
        "runs": call.herald.projections.campaigns.runs(state.campaign_id),
        "progress": _progress(call, state),
    }


def _progress(call: Call, state: cp.CampaignState, is_test: bool = False) -> dict[str, int]:
    """The card's counters as the guide shows them for the campaign's channel: `delivering` is queued,
    neither delivered nor undelivered yet (once the campaign has sent); a push has no delivered,
    undelivered or delivering (push services report no delivery; `ack` is tracking)."""
    counters = call.herald.projections.campaigns.counters(state.campaign_id, is_test)
    if state.settings is not None and state.settings.channel == "push":
        return {k: v for k, v in counters.items() if k not in PUSH_HIDES}
    settled = counters.get("delivered", 0) + counters.get("undelivered", 0)
    if settled:
        counters["delivering"] = counters.get("queued", 0) - settled
    return counters


PUSH_HIDES = frozenset({"delivered", "undelivered", "delivering"})


async def create_campaign(call: Call) -> dict[str, Any]:
    campaign_id, outcome = call.herald.campaigns.create(_settings(call.body), call.context)
    return {"campaign_id": campaign_id, **outcome.to_json()}


async def list_campaigns(call: Call) -> dict[str, Any]:
    docs = by_id(call.herald.campaigns.listed(), "campaign_id")
    return {
        "campaigns": [
            {
                "campaign_id": d["campaign_id"],
                "name": d["settings"]["name"],
                "type": d["settings"]["type"],
                "channel": d["settings"]["channel"],
                "status": d["status"],
                "next_run_at": d["next_run"]["due_at"] if d["next_run"] else None,
                "tags": d["settings"]["tags"],
            }
            for d in docs
        ]
    }


async def get_campaign(call: Call) -> dict[str, Any]:
    loaded = call.herald.campaigns.loaded(call.path_param("campaign_id"))
    return {**_campaign_json(call, loaded.state), "version": loaded.version}


async def put_campaign(call: Call) -> dict[str, Any]:
    body: CampaignBody = call.body
    outcome = call.herald.campaigns.update(
        call.path_param("campaign_id"), _settings(body), call.context, body.expected_version
    )
    return outcome.to_json()


def _action(make: Any) -> Any:
    async def handler(call: Call) -> dict[str, Any]:
        campaign_id = call.path_param("campaign_id")
        call.herald.campaigns.loaded(campaign_id)
        return make(call, campaign_id).to_json()  # type: ignore[no-any-return]

    return handler


def _now(call: Call) -> datetime:
    return call.herald.clock.now()


activate = _action(lambda call, cid: call.herald.campaigns.activate(cid, call.context))
launch = _action(lambda call, cid: call.herald.campaigns.launch_now(cid, call.context))
deactivate = _action(
    lambda call, cid: call.herald.campaigns.execute(cid, cp.DeactivateCampaign(cid, _now(call)), call.context)
)
pause = _action(
    lambda call, cid: call.herald.campaigns.execute(cid, cp.PauseCampaign(cid, _now(call)), call.context)
)
resume = _action(
    lambda call, cid: call.herald.campaigns.execute(cid, cp.ResumeCampaign(cid, _now(call)), call.context)
)


async def delete_campaign(call: Call) -> dict[str, Any]:
    campaign_id = call.path_param("campaign_id")
    command = cp.DeleteCampaign(campaign_id, _now(call))
    return call.herald.campaigns.execute(
        campaign_id, command, call.context, call.query.expected_version
    ).to_json()


async def select_winner(call: Call) -> dict[str, Any]:
    campaign_id = call.path_param("campaign_id")
    return call.herald.campaigns.select_winner(campaign_id, call.body.template_id, call.context).to_json()


async def fire_trigger(call: Call) -> dict[str, Any]:
    body: FireBody = call.body
    request_id = body.request_id or call.context.request_id
    results = call.herald.campaigns.fire(
        call.path_param("campaign_id"), body.profiles, body.content, request_id, call.context
    )
    return {"messages": results}


async def send_test(call: Call) -> dict[str, Any]:
    results = call.herald.campaigns.send_test(
        call.path_param("campaign_id"), call.body.profile_ids, call.context
    )
    return {"messages": results}


async def progress(call: Call) -> dict[str, Any]:
    state = call.herald.campaigns.loaded(call.path_param("campaign_id")).state
    return {"campaign": _progress(call, state), "tests": _progress(call, state, is_test=True)}


async def recipient(call: Call) -> dict[str, Any]:
    """Every decision the campaign made for one profile: "why didn't X get it" (with none: whether the
    profile is in the audience, and why not)."""
    return call.herald.campaigns.recipient(call.path_param("campaign_id"), call.path_param("profile_id"))


async def upcoming(call: Call) -> dict[str, Any]:
    runs = call.herald.campaigns.upcoming_runs(call.path_param("campaign_id"), call.query.count)
    return {"runs": [r.isoformat() for r in runs]}


async def calendar(call: Call) -> dict[str, Any]:
    q: CalendarQuery = call.query
    if q.end < q.start or q.end - q.start > timedelta(days=92):
        raise ValidationFailed("the period runs forward and spans at most 92 days", "end")
    zone = ZoneInfo(call.herald.settings.account_timezone)
    start = datetime.combine(q.start, datetime.min.time(), zone)
    end = datetime.combine(q.end + timedelta(days=1), datetime.min.time(), zone)
    days: dict[str, list[dict[str, Any]]] = {}
    for launch_ in call.herald.projections.campaigns.launches(start, end):
        day = datetime.fromisoformat(launch_["started_at"]).astimezone(zone).date().isoformat()
        days.setdefault(day, []).append({**launch_, "kind": "launched"})
    for doc in call.herald.campaigns.listed():
        due = datetime.fromisoformat(doc["next_run"]["due_at"]) if doc["next_run"] else None
        if due is not None and start <= due < end:
            day = due.astimezone(zone).date().isoformat()
            scheduled = {"campaign_id": doc["campaign_id"], "due_at": doc["next_run"]["due_at"]}
            days.setdefault(day, []).append({**scheduled, "kind": "scheduled"})
    return {"days": [{"date": d, "launches": days[d]} for d in sorted(days)]}


# --- sending policies --------------------------------------------------------------------------


async def create_policy(call: Call) -> dict[str, Any]:
    policy_id, outcome = call.herald.policies.create(call.body.name, call.body.policy, call.context)
    return {"policy_id": policy_id, **outcome.to_json()}


async def get_policy(call: Call) -> dict[str, Any]:
    loaded = call.herald.policies.policy(call.path_param("policy_id"))
    state = loaded.state
    assert state.policy is not None
    return {
        "policy_id": state.policy_id,
        "name": state.name,
        "policy": state.policy.model_dump(mode="json"),
        "version": loaded.version,
    }


async def put_policy(call: Call) -> dict[str, Any]:
    body: PolicyPut = call.body
    policy_id = call.path_param("policy_id")
    command = sp.ChangeSendingPolicy(policy_id, _now(call), name=body.name, policy=body.policy)
    return call.herald.policies.change(policy_id, command, call.context, body.expected_version).to_json()


async def delete_policy(call: Call) -> dict[str, Any]:
    policy_id = call.path_param("policy_id")
    command = sp.DeleteSendingPolicy(policy_id, _now(call))
    return call.herald.policies.change(
        policy_id, command, call.context, call.query.expected_version
    ).to_json()


async def set_account_policy(call: Call) -> dict[str, Any]:
    return call.herald.policies.set_account_policy(call.body.policy_id, call.context).to_json()


C = "/api/v1/campaigns/{campaign_id}"
P = "/api/v1/sending-policies/{policy_id}"
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/campaigns",
        create_campaign,
        "Create a campaign",
        "campaigns",
        body=CampaignBody,
        status=201,
    ),
    Endpoint("GET", "/api/v1/campaigns", list_campaigns, "List campaigns", "campaigns", role="read"),
    Endpoint(
        "GET",
        "/api/v1/campaigns/calendar",
        calendar,
        "Launches and due runs per day",
        "campaigns",
        query=CalendarQuery,
        role="read",
    ),
    Endpoint(
        "GET", C, get_campaign, "A campaign: settings, state, current run, progress", "campaigns", role="read"
    ),
    Endpoint("PUT", C, put_campaign, "Replace a campaign's settings", "campaigns", body=CampaignBody),
    Endpoint("DELETE", C, delete_campaign, "Delete a campaign", "campaigns", query=VersionQuery),
    Endpoint(
        "POST", C + "/activate", activate, "Activate: wait for the schedule (or the trigger)", "campaigns"
    ),
    Endpoint("POST", C + "/deactivate", deactivate, "Deactivate (cancels a running run)", "campaigns"),
    Endpoint("POST", C + "/launch", launch, "Start a run now, outside the schedule", "campaigns"),
    Endpoint("POST", C + "/pause", pause, "Pause sending (the kill switch)", "campaigns"),
    Endpoint("POST", C + "/resume", resume, "Resume a paused campaign", "campaigns"),
    Endpoint(
        "POST", C + "/winner", select_winner, "Choose a split test's winner", "campaigns", body=WinnerBody
    ),
    Endpoint(
        "POST", C + "/fire", fire_trigger, "Fire a trigger campaign for profiles", "campaigns", body=FireBody
    ),
    Endpoint(
        "POST", C + "/test", send_test, "Send the templates to test profiles", "campaigns", body=TestBody
    ),
    Endpoint("GET", C + "/progress", progress, "Progress counters", "campaigns", role="read"),
    Endpoint(
        "GET",
        C + "/recipients/{profile_id}",
        recipient,
        "What the campaign decided for a profile",
        "campaigns",
        role="read",
    ),
    Endpoint(
        "GET",
        C + "/upcoming",
        upcoming,
        "The next scheduled runs",
        "campaigns",
        query=UpcomingQuery,
        role="read",
    ),
    Endpoint(
        "POST",
        "/api/v1/sending-policies",
        create_policy,
        "Create a sending policy",
        "sending policies",
        body=PolicyBody,
        status=201,
    ),
    Endpoint("GET", P, get_policy, "A sending policy", "sending policies", role="read"),
    Endpoint("PUT", P, put_policy, "Change a sending policy", "sending policies", body=PolicyPut),
    Endpoint("DELETE", P, delete_policy, "Delete a sending policy", "sending policies", query=VersionQuery),
    Endpoint(
        "PUT",
        "/api/v1/account/sending-policy",
        set_account_policy,
        "The account's default sending policy",
        "sending policies",
        body=AccountPolicyBody,
    ),
]
