"""A scenario's graph: its nodes, their outputs, and the checks that refuse a graph that cannot run.

A scenario is built of nodes ("ноды"); each does one thing and passes the profile on (guide,
"Ноды (шаги) сценария"). The graph names the first node after the capture (`start`) and lists the
nodes, each with an id given when it is created ("ID … присваиваются в момент создания ноды").
Outputs:
- most nodes have one successor, `next` (None: the path ends there, the instance completes);
- a condition and a content filter have two: `true` (right, green) and `false` (down, red);
- a split has one per branch (`branches[i].next`, branch names `branch_1`…);
- "Добавить связь" (a link) is just an output naming any node, earlier ones included: a loop.

The node types (`type`) and what they do:

| type | guide | does |
|---|---|---|
| `pause` | Пауза | waits (`scenario_waits`) before the next node |
| `campaign` | Кампания / Триггер | sends a trigger campaign (one channel, 1–16 templates at random) |
| `condition` | Условие | segment rules, a percent window: true or false, at once or within a time |
| `copy_to_database` | Импорт в БД | copies the profile to another database (fields mapped, no history) |
| `update_data` | Обновить данные | sets, clears, increases or decreases fields, adds tags |
| `subscription` | Управление подписками | adds or updates subscriptions on a resource's channels |
| `webhook` | Обратная связь | a GET or POST to another system, URL and parameters templated |
| `goal` | Регистрация цели | records goals with one value, bound to a pixel |
| `split` | Распределение | random on each entry, or static (the same branch for a profile) |
| `content_filter` | Контент-фильтр | typed rules on the entry's JSON `content`: true or false |
| `promo_code` | Назначить промокод | binds a promo code of a loyalty program |
| `stop_list` | Стоп-списки | adds the profile's contacts to a stop list, or removes them |
| `static_segment` | Статические сегменты | adds the profile to a static segment, or removes it |

`check_graph` refuses, with the dotted path of the node or output at fault (`graph.nodes.3.false`):
an empty graph, a blank or repeated id, a `start` that names no node, a dangling edge (an output
naming a node that does not exist), a node the start cannot reach, and a loop that no pause or
timed condition breaks (a profile would go round it at once, forever). Which edges break a loop:
the output of a pause that always waits (`scenario_waits.always_waits`) and the `false` output of
a condition that waits for a time (the timeout). A timed condition's `true` output does not: it
is taken at once when the condition holds.

What depends on other objects (the campaign exists and is a trigger of this database, the fields
exist and take the values, the segment rules are valid) is checked by the caller, which passes
the graph back with the values in stored form and the problems as (path, reason) pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from herald.domain.content_filter import ContentFilter, check_filter
from herald.domain.errors import ValidationFailed
from herald.domain.scenario_waits import Wait, always_waits, check_wait
from herald.domain.secrets import SealedSecret
from herald.domain.segments import Group, PercentLimit, Rule
from herald.domain.statuses import Status

MAX_NODES = 500
MAX_SPLIT_BRANCHES = 10
MAX_OPERATIONS = 50
MAX_WEBHOOK_PARAMS = 50
MAX_CONDITION_WAIT = timedelta(days=365)
MAX_WEBHOOK_ATTEMPTS = 10
MAX_WEBHOOK_TIMEOUT = 60.0


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Node(_Model):
    id: str
    name: str = Field("", description="the element's name (Название элемента)")


class _Single(_Node):
    next: str | None = Field(None, description="the next node; None: the path ends")


class PauseNode(_Single):
    type: Literal["pause"] = "pause"
    wait: Wait
    timezone: str | None = Field(None, description="None: the account's")
    use_profile_timezone: bool = False


class CampaignNode(_Single):
    type: Literal["campaign"] = "campaign"
    campaign_id: str = Field(description="a trigger campaign of the scenario's database")


class ConditionNode(_Node):
    type: Literal["condition"] = "condition"
    condition: Literal["and", "or"] = "and"
    rules: tuple[Rule, ...] = ()
    groups: tuple[Group, ...] = ()
    limit: PercentLimit | None = Field(None, description="the percent window (Ограничение)")
    wait_days: int = Field(0, ge=0)
    wait_hours: int = Field(0, ge=0)
    wait_minutes: int = Field(0, ge=0)
    true: str | None = None
    false: str | None = None

    @property
    def wait(self) -> timedelta | None:
        """How long the condition waits to become true (Ожидать условие…); None: checked once."""
        total = timedelta(days=self.wait_days, hours=self.wait_hours, minutes=self.wait_minutes)
        return total or None


class FieldMapping(_Model):
    source: str = Field(description="a field of the scenario's database")
    target: str | None = Field(None, description="a field of the target database; None: skip (Пропустить)")


class CopyToDatabaseNode(_Single):
    type: Literal["copy_to_database"] = "copy_to_database"
    database_id: str
    update_existing: bool = Field(False, description="Обновлять поля подписчика, если он уже существует")
    fields: tuple[FieldMapping, ...] = ()


Operation = Literal["set", "clear", "increment", "decrement", "add_tags"]


class FieldOperation(_Model):
    field: str
    op: Operation
    value: JsonValue = None


class UpdateDataNode(_Single):
    type: Literal["update_data"] = "update_data"
    operations: tuple[FieldOperation, ...]


class ProfileContacts(_Model):
    """The profile's own Email and Телефоны fields."""

    kind: Literal["profile"] = "profile"


class ResourceContacts(_Model):
    """The profile's subscriptions on another resource (the only source for push and a Telegram bot's
    chat ids, which no profile field holds)."""

    kind: Literal["resource"] = "resource"
    resource_id: str


# Channels whose contact (a device token, a chat id) is in no profile field: added only from another
# resource's subscriptions; updating the held ones needs no source.
_RESOURCE_SOURCED = frozenset({"push", "telegram_bot"})


class SubscriptionNode(_Single):
    type: Literal["subscription"] = "subscription"
    mode: Literal["add", "update"] = "add"
    resource_id: str
    channels: tuple[Literal["email", "sms", "push", "telegram_bot"], ...]
    status: Status = Status.SUBSCRIBED
    source: Annotated[ProfileContacts | ResourceContacts, Field(discriminator="kind")] = ProfileContacts()
    include_unsafe: bool = Field(
        False, description="also copy subscriptions that are unsubscribed, complainers, hard bounced, invalid"
    )


class WebhookParam(_Model):
    """A parameter; a custom one whose name says it is a credential (`api_key`, `token`) is stored
    masked in `value` and whole in `sealed_value` (`domain/secrets.py`), opened only to call."""

    name: str
    source: Literal["profile", "custom"] = Field(
        description="из подписчика: a profile field; указать свое: text"
    )
    value: str = Field(description="the field's name, or a template (`{loyalty.black-friday.promocode}`)")
    sealed_value: SealedSecret | None = Field(None, description="set by Herald: the credential")


class WebhookNode(_Single):
    """A call out; a URL with credentials in it (a login, a `token=` parameter) is stored masked in
    `url` and whole in `sealed_url`, opened only to call."""

    type: Literal["webhook"] = "webhook"
    method: Literal["GET", "POST"] = "GET"
    url: str = Field(description="a template: `https://example.org/api/?code={loyalty.discount.promocode}`")
    sealed_url: SealedSecret | None = Field(None, description="set by Herald: the URL with its credentials")
    params: tuple[WebhookParam, ...] = ()
    timeout_seconds: float = Field(10.0, gt=0, le=MAX_WEBHOOK_TIMEOUT)
    attempts: int = Field(3, ge=1, le=MAX_WEBHOOK_ATTEMPTS)


class GoalNode(_Single):
    type: Literal["goal"] = "goal"
    pixel_id: str
    goals: tuple[str, ...]
    value: float = 0.0


class SplitBranch(_Model):
    percent: int = Field(ge=1, le=100)
    next: str | None = None


class SplitNode(_Node):
    type: Literal["split"] = "split"
    mode: Literal["random", "static"] = "random"
    branches: tuple[SplitBranch, ...]


class ContentFilterNode(_Node):
    type: Literal["content_filter"] = "content_filter"
    filter: ContentFilter
    true: str | None = None
    false: str | None = None


class PromoCodeNode(_Single):
    type: Literal["promo_code"] = "promo_code"
    program_id: str


class StopListNode(_Single):
    type: Literal["stop_list"] = "stop_list"
    action: Literal["add", "remove"] = "add"
    stop_list_id: str
    channel: Literal["email", "sms"] = "email"
    contacts: Literal["all", "highest_priority"] = "all"
    statuses: tuple[Status, ...] = Field(
        (), description="of the subscriptions whose contacts are listed; empty: any"
    )
    resource_id: str


class StaticSegmentNode(_Single):
    type: Literal["static_segment"] = "static_segment"
    action: Literal["add", "remove"] = "add"
    segment_id: str


AnyNode = (
    PauseNode
    | CampaignNode
    | ConditionNode
    | CopyToDatabaseNode
    | UpdateDataNode
    | SubscriptionNode
    | WebhookNode
    | GoalNode
    | SplitNode
    | ContentFilterNode
    | PromoCodeNode
    | StopListNode
    | StaticSegmentNode
)
Node = Annotated[AnyNode, Field(discriminator="type")]
EFFECT_TYPES = frozenset(
    {
        "campaign",
        "copy_to_database",
        "update_data",
        "subscription",
        "goal",
        "promo_code",
        "stop_list",
        "static_segment",
    }
)
"""Nodes whose action changes other objects: the processor does it, then records the node's exit."""
CALL_TYPES = frozenset({"webhook"})
"""Nodes that call out of Herald: the webhook worker does the call, off the processor."""


@dataclass(frozen=True, slots=True)
class Output:
    """One output of a node: its branch name, the node it leads to (None: the path ends), its path."""

    branch: str
    target: str | None
    path: str


class ScenarioGraph(_Model):
    start: str | None = Field(None, description="the node after the capture; default: the first listed")
    nodes: tuple[Node, ...]

    @property
    def first(self) -> str:
        return self.start if self.start is not None else self.nodes[0].id

    def index(self) -> dict[str, AnyNode]:
        """The nodes by id (build it once and keep it: the graph is a value)."""
        return {node.id: node for node in self.nodes}

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(node.id for node in self.nodes)


def outputs(node: AnyNode) -> tuple[Output, ...]:
    """A node's outputs in order: `next`; `true`, `false`; or each split branch."""
    if isinstance(node, ConditionNode | ContentFilterNode):
        return (Output("true", node.true, "true"), Output("false", node.false, "false"))
    if isinstance(node, SplitNode):
        return tuple(
            Output(f"branch_{i + 1}", branch.next, f"branches.{i}.next")
            for i, branch in enumerate(node.branches)
        )
    return (Output("next", node.next, "next"),)


def output(node: AnyNode, branch: str) -> str | None:
    """The node an output leads to."""
    for found in outputs(node):
        if found.branch == branch:
            return found.target
    raise KeyError(f"node {node.id!r} has no output {branch!r}")


def _delays(node: AnyNode, branch: str) -> bool:
    """Whether taking this output means time has passed since the node was reached."""
    if isinstance(node, PauseNode):
        return always_waits(node.wait)
    return isinstance(node, ConditionNode) and node.wait is not None and branch == "false"


# --- checking ----------------------------------------------------------------------------------


def check_graph(graph: ScenarioGraph, path: str = "graph") -> ScenarioGraph:
    """The graph with its content filters in stored form; refuses one that cannot run (see above)."""
    if not graph.nodes:
        raise ValidationFailed("a scenario needs at least one node", f"{path}.nodes")
    if len(graph.nodes) > MAX_NODES:
        raise ValidationFailed(f"a scenario has at most {MAX_NODES} nodes", f"{path}.nodes.{MAX_NODES}")
    places = _places(graph, path)
    if graph.start is not None and graph.start not in places:
        raise ValidationFailed(f"the start names node {graph.start!r}, which does not exist", f"{path}.start")
    nodes = tuple(_check_node(node, f"{path}.nodes.{i}") for i, node in enumerate(graph.nodes))
    checked = graph.model_copy(update={"nodes": nodes})
    _check_edges(checked, places, path)
    _check_reachable(checked, places, path)
    _check_loops(checked, places, path)
    return checked


def _places(graph: ScenarioGraph, path: str) -> dict[str, int]:
    places: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        if not node.id.strip() or node.id != node.id.strip():
            raise ValidationFailed(
                "a node id is non-blank text without surrounding spaces", f"{path}.nodes.{i}.id"
            )
        if node.id in places:
            raise ValidationFailed(
                f"node id {node.id!r} is used twice (also by nodes.{places[node.id]})", f"{path}.nodes.{i}.id"
            )
        places[node.id] = i
    return places


def _check_edges(graph: ScenarioGraph, places: Mapping[str, int], path: str) -> None:
    for i, node in enumerate(graph.nodes):
        for out in outputs(node):
            if out.target is not None and out.target not in places:
                raise ValidationFailed(
                    f"node {node.id!r} links to node {out.target!r}, which does not exist",
                    f"{path}.nodes.{i}.{out.path}",
                )


def _check_reachable(graph: ScenarioGraph, places: Mapping[str, int], path: str) -> None:
    seen = set(_reachable(graph.index(), graph.first))
    for i, node in enumerate(graph.nodes):
        if node.id not in seen:
            raise ValidationFailed(
                f"node {node.id!r} cannot be reached from the start (node {graph.first!r})",
                f"{path}.nodes.{i}",
            )


def _reachable(nodes: Mapping[str, AnyNode], start: str) -> Iterator[str]:
    stack, seen = [start], set()
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        yield node_id
        stack.extend(out.target for out in outputs(nodes[node_id]) if out.target is not None)


def _check_loops(graph: ScenarioGraph, places: Mapping[str, int], path: str) -> None:
    """Refuse a cycle of outputs none of which makes time pass (depth-first, colouring nodes)."""
    nodes = graph.index()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    trail: list[str] = []

    def visit(node_id: str) -> None:
        state[node_id] = 1
        trail.append(node_id)
        node = nodes[node_id]
        for out in outputs(node):
            if out.target is None or _delays(node, out.branch):
                continue
            if state.get(out.target) == 1:
                loop = " → ".join([*trail[trail.index(out.target) :], out.target])
                raise ValidationFailed(
                    f"the loop {loop} has no pause or timed condition to break it: a profile would go round "
                    "it at once, forever",
                    f"{path}.nodes.{places[node_id]}.{out.path}",
                )
            if out.target not in state:
                visit(out.target)
        trail.pop()
        state[node_id] = 2

    for node in graph.nodes:
        if node.id not in state:
            visit(node.id)


def _check_node(node: AnyNode, path: str) -> AnyNode:
    match node:
        case PauseNode():
            check_wait(node.wait, node.timezone, path)
        case ConditionNode():
            wait = node.wait
            if wait is not None and wait > MAX_CONDITION_WAIT:
                raise ValidationFailed("a condition waits at most 365 days", f"{path}.wait_days")
        case SplitNode():
            _check_split(node, path)
        case ContentFilterNode():
            return node.model_copy(update={"filter": check_filter(node.filter, f"{path}.filter")})
        case UpdateDataNode():
            _check_operations(node, path)
        case WebhookNode():
            if len(node.params) > MAX_WEBHOOK_PARAMS:
                raise ValidationFailed(
                    f"a call has at most {MAX_WEBHOOK_PARAMS} parameters", f"{path}.params"
                )
            for i, param in enumerate(node.params):
                _text(param.name, f"{path}.params.{i}.name")
        case GoalNode():
            if not node.goals:
                raise ValidationFailed("name at least one goal", f"{path}.goals")
            for i, goal in enumerate(node.goals):
                _text(goal, f"{path}.goals.{i}")
        case SubscriptionNode():
            if not node.channels:
                raise ValidationFailed("pick at least one channel", f"{path}.channels")
            unsourced = sorted(_RESOURCE_SOURCED.intersection(node.channels))
            if unsourced and node.mode == "add" and isinstance(node.source, ProfileContacts):
                raise ValidationFailed(
                    f"{unsourced[0]} subscriptions can only be copied from another resource's subscriptions",
                    f"{path}.source",
                )
    return node


def _check_split(node: SplitNode, path: str) -> None:
    if not 2 <= len(node.branches) <= MAX_SPLIT_BRANCHES:
        raise ValidationFailed(f"a split has 2 to {MAX_SPLIT_BRANCHES} branches", f"{path}.branches")
    total = sum(branch.percent for branch in node.branches)
    if total != 100:
        raise ValidationFailed(f"the branches' percentages add up to {total}, not 100", f"{path}.branches")


def _check_operations(node: UpdateDataNode, path: str) -> None:
    if not 1 <= len(node.operations) <= MAX_OPERATIONS:
        raise ValidationFailed(f"update 1 to {MAX_OPERATIONS} fields", f"{path}.operations")
    seen: set[str] = set()
    for i, operation in enumerate(node.operations):
        at = f"{path}.operations.{i}"
        if operation.field in seen:
            raise ValidationFailed(f"field {operation.field!r} is updated twice", f"{at}.field")
        seen.add(operation.field)
        if (operation.op == "clear") != (operation.value is None):
            need = "takes no value" if operation.op == "clear" else "needs a value"
            raise ValidationFailed(f"{operation.op} {need}", f"{at}.value")


def _text(value: str, path: str) -> None:
    if not value.strip():
        raise ValidationFailed("expected non-blank text", path)
