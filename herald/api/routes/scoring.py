"""Scoring: change a profile's number fields, and the rules that change them on goals and tracked events."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from herald.api.endpoints import Call, Endpoint
from herald.api.routes.catalog import VersionQuery, expected_version_field
from herald.domain import scoring as sc
from herald.projections.catalog import SCORING_RULE

R = "/api/v1/scoring-rules"
ONE = R + "/{rule_id}"
T = "scoring"


class ScoresBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    changes: list[sc.ScoreChange] = Field(min_length=1, max_length=sc.MAX_CHANGES)
    request_id: str | None = Field(None, max_length=200, description="the same id never changes twice")


class RulePut(sc.ScoringRuleSettings):
    expected_version: int | None = expected_version_field()


async def change_scores(call: Call) -> dict[str, Any]:
    body: ScoresBody = call.body
    profile_id = call.path_param("profile_id")
    cause = body.request_id or call.context.request_id
    outcome = call.herald.scoring.change(profile_id, body.changes, cause, "api", call.context)
    return outcome.to_json()


def _rule_json(call: Call, rule_id: str) -> dict[str, Any]:
    state = call.herald.scoring.rule(rule_id)
    assert state.settings is not None
    return {"rule_id": rule_id, **state.settings.model_dump(mode="json"), "since": state.since}


async def create_rule(call: Call) -> dict[str, Any]:
    settings = sc.ScoringRuleSettings.model_validate(call.body.model_dump())
    rule_id, outcome = call.herald.scoring.create_rule(settings, call.context)
    return {"rule_id": rule_id, **outcome.to_json()}


async def list_rules(call: Call) -> dict[str, Any]:
    return {"rules": call.herald.catalog.projection.objects(SCORING_RULE)}


async def get_rule(call: Call) -> dict[str, Any]:
    return _rule_json(call, call.path_param("rule_id"))


async def put_rule(call: Call) -> dict[str, Any]:
    body: RulePut = call.body
    settings = sc.ScoringRuleSettings.model_validate(body.model_dump(exclude={"expected_version"}))
    outcome = call.herald.scoring.change_rule(
        call.path_param("rule_id"), settings, call.context, body.expected_version
    )
    return outcome.to_json()


async def delete_rule(call: Call) -> dict[str, Any]:
    return call.herald.scoring.delete_rule(call.path_param("rule_id"), call.context).to_json()


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/profiles/{profile_id}/scores",
        change_scores,
        "Add to, subtract from or set a profile's number fields",
        T,
        body=ScoresBody,
    ),
    Endpoint("POST", R, create_rule, "Create a scoring rule", T, body=sc.ScoringRuleSettings, status=201),
    Endpoint("GET", R, list_rules, "List scoring rules", T, role="read"),
    Endpoint("GET", ONE, get_rule, "A scoring rule", T, role="read"),
    Endpoint("PUT", ONE, put_rule, "Replace a scoring rule", T, body=RulePut),
    Endpoint("DELETE", ONE, delete_rule, "Delete a scoring rule", T, query=VersionQuery),
]
