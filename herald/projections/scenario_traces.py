"""A profile's path through a scenario, read from its journey stream: "why did (or didn't) X get this".

`trace` turns the journey's events into the instances with their steps in order: each node
entered, when, the branch it was left by and the node's outcome (the message sent, the webhook's
answer, the fields updated), the wait's due time, the conditions' results, the error of a node
that failed; and the entries the re-entry rule refused, with why.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from herald.infra.event_store import RecordedEvent


def trace(scenario_id: str, profile_id: str, events: Iterable[RecordedEvent]) -> dict[str, Any]:
    instances: dict[int, dict[str, Any]] = {}
    refused: list[dict[str, Any]] = []
    for event in events:
        data = event.data
        entry = data.get("entry")
        if event.type == "ProfileRejectedByReentryRule":
            refused.append(
                {"at": data["at"], "rule": data["rule"], "reason": data["reason"], "source": data["source"]}
            )
            continue
        if entry is None:
            continue
        if event.type == "ProfileEnteredScenario":
            instances[entry] = {
                "entry": entry,
                "entered_at": data["at"],
                "source": data["source"],
                "content": data.get("content"),
                "status": "running",
                "steps": [],
            }
            continue
        instance = instances.get(entry)
        if instance is not None:
            _apply(instance, event.type, data)
    return {
        "scenario_id": scenario_id,
        "profile_id": profile_id,
        "instances": [instances[entry] for entry in sorted(instances)],
        "refused": refused,
    }


def _apply(instance: dict[str, Any], kind: str, data: dict[str, Any]) -> None:
    steps: list[dict[str, Any]] = instance["steps"]
    step = steps[-1] if steps else None
    match kind:
        case "ScenarioInstanceReset":
            instance["reset_at"] = data["at"]
            steps.append({"reset": True, "at": data["at"], "source": data["source"]})
        case "ScenarioNodeEntered":
            steps.append(
                {
                    "visit": data["visit"],
                    "node_id": data["node_id"],
                    "node_type": data["node_type"],
                    "version": data["version"],
                    "entered_at": data["at"],
                }
            )
        case "ScenarioConditionEvaluated" if step is not None:
            step.setdefault("evaluations", []).append({"at": data["at"], "result": data["result"]})
        case "ScenarioWaitScheduled" if step is not None:
            step["due_at"] = data["due_at"]
            step["waits_for"] = data["purpose"]
            if data.get("deadline"):
                step["deadline"] = data["deadline"]
        case "ScenarioWaitElapsed" if step is not None:
            step["woke_at"] = data["at"]
        case "ScenarioWebhookAnswered" if step is not None:
            step.setdefault("calls", []).append(
                {k: data.get(k) for k in ("attempt", "method", "url", "status", "error", "duration_ms")}
            )
        case "ScenarioNodeFailed" if step is not None:
            step["error"] = data["reason"]
        case "ScenarioNodeExited" if step is not None:
            step.update(exited_at=data["at"], branch=data["branch"], outcome=data.get("outcome", {}))
        case "ScenarioInstanceMoved":
            steps.append(
                {
                    "moved_from": data["node_id"],
                    "to": data.get("to"),
                    "version": data["version"],
                    "at": data["at"],
                }
            )
        case "ScenarioInstanceAsleep":
            instance["asleep_since"] = data["at"]
        case "ScenarioInstanceWoke":
            instance.pop("asleep_since", None)
        case "ScenarioInstanceCompleted":
            instance.update(status="completed", finished_at=data["at"])
        case "ScenarioInstanceTerminated":
            instance.update(status="terminated", finished_at=data["at"], reason=data["reason"])
