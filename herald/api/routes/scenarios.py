"""Scenarios: create, read, change (publishing versions), state actions, entries, statistics and traces.

Decisions where the guide is silent:
- A scenario is sent whole: its settings (`name`, `description`, `tags`, `database_id`, `reentry`,
  `sleeping_profiles`, `capture`) and its `graph` (`start`, `nodes`). `PUT` replaces both; a changed
  graph is published as the next version, and `removed` says where the instances at nodes it drops
  go (`move_to` a node, or end; the default is end).
- Every bad graph is a 422 naming the node's path (`graph.nodes.3.false`), whether its shape is
  wrong (an unknown node type, a missing field) or its meaning (a dangling edge, an unreachable
  node, a loop no pause or timed condition breaks, a campaign that is not a trigger of the
  database, an object it names that does not exist), as campaigns refuse what they name.
- `POST /scenarios/{id}/enter` is the special API call: up to 1,000 profiles (each by id or a match
  key, as a trigger fire takes them) and one free JSON `content`; only a scenario whose capture is
  `api` takes it. `POST /scenarios/{id}/profiles` is manual entry: `profile_ids` or a `segment_id`.
  Both take a `request_id` (or the Idempotency-Key header): the same request never enters twice.
  Entries are decided by the processor, in order with every other capture.
- `GET /scenarios/{id}/profiles/{profile_id}` is the profile's path through the scenario.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from herald.api.endpoints import Call, Endpoint
from herald.api.routes.catalog import VersionQuery, by_id, expected_version_field
from herald.domain import scenarios as sc
from herald.domain.errors import ValidationFailed
from herald.domain.scenario_graph import ScenarioGraph
from herald.domain.scenario_instances import journey_stream
from herald.projections.scenario_traces import trace
from herald.services.scenarios import MAX_ENTERED, MAX_SENT

MAX_UPCOMING = 100
MAX_PERIOD = timedelta(days=366)

# The tags pydantic puts into an error's location after a tagged union: not part of the path a user sees.
_TAGS = frozenset(
    {
        *("pause", "campaign", "condition", "copy_to_database", "update_data", "subscription", "webhook"),
        *("goal", "split", "content_filter", "promo_code", "stop_list", "static_segment"),
        *("relative", "time_of_day", "date", "weekday", "window", "profile", "resource"),
        *("api", "import", "message_action", "field_changed", "pixel", "event", "schedule"),
        *("field", "message_history", "segment", "external", "percent", "count", "last_days", "between"),
        *("daily", "daily_times", "once", "date_times", "weekdays", "weekdays_times"),
        *("month_days", "month_days_times", "post_url", "csv", "list"),
    }
)


_UNION_LISTS = frozenset({"nodes", "rules"})  # lists of tagged unions: nodes by type, rules by kind
_UNION_FIELDS = frozenset({"wait", "capture", "source", "limit", "period", "schedule"})


class ScenarioBody(sc.ScenarioSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")
    graph: ScenarioGraph


class ScenarioPut(ScenarioBody):
    removed: tuple[sc.RemovedNode, ...] = Field(
        (), description="where instances at nodes the new graph drops go (default: they end)"
    )
    expected_version: int | None = expected_version_field()


class EnterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profiles: list[dict[str, JsonValue]] = Field(min_length=1, max_length=MAX_ENTERED)
    content: dict[str, JsonValue] | None = Field(
        None, description="free JSON for content filters and messages"
    )
    request_id: str | None = Field(None, max_length=200, description="the same id never enters twice")


class SendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile_ids: list[str] | None = Field(None, max_length=MAX_SENT)
    segment_id: str | None = Field(None, description="send the segment's members now")
    request_id: str | None = Field(None, max_length=200, description="the same id never enters twice")


class UpcomingQuery(BaseModel):
    count: int = Field(12, ge=1, le=MAX_UPCOMING)


class PeriodQuery(BaseModel):
    start: date
    end: date


def _parsed(model: type[ScenarioBody], document: Any) -> Any:
    """The body, or a 422 whose path is the node's (the union tags pydantic adds left out)."""
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        raise ValidationFailed(str(problem["msg"]), _path(problem["loc"])) from None


def _path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        before = loc[i - 1] if i else None
        in_list = isinstance(before, int) and i >= 2 and loc[i - 2] in _UNION_LISTS
        if isinstance(part, str) and part in _TAGS and (in_list or before in _UNION_FIELDS):
            continue
        parts.append(str(part))
    return ".".join(parts)


def _settings(body: ScenarioBody) -> sc.ScenarioSettings:
    return sc.ScenarioSettings.model_validate(
        body.model_dump(exclude={"graph", "removed", "expected_version"}, mode="json")
    )


def _scenario_json(call: Call, state: sc.ScenarioState, version: int) -> dict[str, Any]:
    assert state.settings is not None and state.current is not None
    return {
        "scenario_id": state.scenario_id,
        **state.settings.model_dump(mode="json"),
        "graph": state.current.graph.model_dump(mode="json"),
        "graph_version": state.version,
        "versions": [
            {"version": v, "published_at": p.at.isoformat()} for v, p in sorted(state.versions.items())
        ],
        "active": state.active,
        "next_run_at": state.next_run.due_at.isoformat() if state.next_run else None,
        "in_process": call.herald.projections.scenarios.in_process(state.scenario_id),
        "created_at": state.created_at.isoformat() if state.created_at else None,
        "updated_at": state.updated_at.isoformat() if state.updated_at else None,
        "version": version,
    }


async def create_scenario(call: Call) -> dict[str, Any]:
    body: ScenarioBody = _parsed(ScenarioBody, call.body)
    scenario_id, outcome = call.herald.scenarios.create(_settings(body), body.graph, call.context)
    return {"scenario_id": scenario_id, **outcome.to_json()}


async def list_scenarios(call: Call) -> dict[str, Any]:
    cards = by_id(call.herald.projections.scenarios.cards(), "scenario_id")
    return {
        "scenarios": [
            {
                "scenario_id": card["scenario_id"],
                "name": card["settings"]["name"],
                "description": card["settings"]["description"],
                "tags": card["settings"]["tags"],
                "database_id": card["settings"]["database_id"],
                "capture": card["settings"]["capture"]["kind"],
                "active": card["active"],
                "in_process": card["in_process"],
                "graph_version": card["version"],
                "created_at": card["created_at"],
                "updated_at": card["updated_at"],
            }
            for card in cards
        ]
    }


async def get_scenario(call: Call) -> dict[str, Any]:
    loaded = call.herald.scenarios.loaded(call.path_param("scenario_id"))
    return _scenario_json(call, loaded.state, loaded.version)


async def put_scenario(call: Call) -> dict[str, Any]:
    body: ScenarioPut = _parsed(ScenarioPut, call.body)
    scenario_id = call.path_param("scenario_id")
    outcome = call.herald.scenarios.change(
        scenario_id, _settings(body), body.graph, body.removed, call.context, body.expected_version
    )
    return outcome.to_json()


async def delete_scenario(call: Call) -> dict[str, Any]:
    scenario_id = call.path_param("scenario_id")
    return call.herald.scenarios.delete(scenario_id, call.context, call.query.expected_version).to_json()


async def activate(call: Call) -> dict[str, Any]:
    return call.herald.scenarios.activate(call.path_param("scenario_id"), call.context).to_json()


async def deactivate(call: Call) -> dict[str, Any]:
    return call.herald.scenarios.deactivate(call.path_param("scenario_id"), call.context).to_json()


async def enter(call: Call) -> dict[str, Any]:
    body: EnterBody = call.body
    results = call.herald.scenarios.enter(
        call.path_param("scenario_id"),
        body.profiles,
        body.content,
        body.request_id or call.context.request_id,
        call.context,
    )
    return {"profiles": results}


async def send_profiles(call: Call) -> dict[str, Any]:
    body: SendBody = call.body
    count = call.herald.scenarios.send_profiles(
        call.path_param("scenario_id"),
        body.profile_ids,
        body.segment_id,
        body.request_id or call.context.request_id,
        call.context,
    )
    return {"requested": count}


async def upcoming(call: Call) -> dict[str, Any]:
    runs = call.herald.scenarios.upcoming_runs(call.path_param("scenario_id"), call.query.count)
    return {"runs": [run.isoformat() for run in runs]}


async def statistics(call: Call) -> dict[str, Any]:
    q: PeriodQuery = call.query
    if q.end < q.start or q.end - q.start > MAX_PERIOD:
        raise ValidationFailed("the period runs forward and spans at most 366 days", "end")
    return call.herald.scenarios.statistics(call.path_param("scenario_id"), q.start, q.end)


async def profile_path(call: Call) -> dict[str, Any]:
    scenario_id, profile_id = call.path_param("scenario_id"), call.path_param("profile_id")
    call.herald.scenarios.loaded(scenario_id)
    events = call.herald.store.read_stream(journey_stream(scenario_id, profile_id))
    return trace(scenario_id, profile_id, events)


S = "/api/v1/scenarios/{scenario_id}"
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/scenarios",
        create_scenario,
        "Create a scenario",
        "scenarios",
        body=ScenarioBody,
        status=201,
        raw_body=True,
    ),
    Endpoint("GET", "/api/v1/scenarios", list_scenarios, "List scenarios", "scenarios", role="read"),
    Endpoint(
        "GET",
        S,
        get_scenario,
        "A scenario: settings, current graph, versions, state",
        "scenarios",
        role="read",
    ),
    Endpoint(
        "PUT",
        S,
        put_scenario,
        "Replace a scenario (a changed graph is the next version)",
        "scenarios",
        body=ScenarioPut,
        raw_body=True,
    ),
    Endpoint(
        "DELETE", S, delete_scenario, "Delete a scenario (its instances end)", "scenarios", query=VersionQuery
    ),
    Endpoint("POST", S + "/activate", activate, "Activate: capture profiles, run instances", "scenarios"),
    Endpoint(
        "POST", S + "/deactivate", deactivate, "Deactivate (sleeping profiles kept or dropped)", "scenarios"
    ),
    Endpoint(
        "POST",
        S + "/enter",
        enter,
        "The special API call: profiles enter with content",
        "scenarios",
        body=EnterBody,
    ),
    Endpoint(
        "POST",
        S + "/profiles",
        send_profiles,
        "Send profiles into the scenario (by ids or a segment)",
        "scenarios",
        body=SendBody,
    ),
    Endpoint(
        "GET",
        S + "/upcoming",
        upcoming,
        "An audience scenario's next runs",
        "scenarios",
        query=UpcomingQuery,
        role="read",
    ),
    Endpoint(
        "GET",
        S + "/statistics",
        statistics,
        "Entered, completed, in process, errors; per node",
        "scenarios",
        query=PeriodQuery,
        role="read",
    ),
    Endpoint(
        "GET",
        S + "/profiles/{profile_id}",
        profile_path,
        "A profile's path through the scenario",
        "scenarios",
        role="read",
    ),
]
