"""Access: what a user may do to an object, from their roles, their groups and the object's groups.

The guide's model (Settings → Users, Roles):
- Groups control *visibility*. An object belongs to any number of groups; the
  system group "Главная" (`main`) holds every object.
- Roles control *actions*: per kind of object, which of "Просмотр объекта"
  (`view`), "Чтение и выгрузка" (`read`: data lists and downloads),
  "Создание и редактирование" (`edit`), "Запуск" (`launch`, campaigns and
  scenarios) and "Модерация" (`moderate`, templates) are allowed, and the
  groups the role applies to.
- For an object in group G a user needs G among their groups and a role whose
  groups include G allowing the action; a role whose groups include `main`
  applies to every object (every object is in `main`). "Мастер" bypasses roles
  and groups and alone reaches the settings.

Decisions where the guide is silent:
- `read`, `edit`, `launch` and `moderate` each imply `view` (a user who may
  change or launch an object sees it).
- A request that names no object (a list, a creation) is allowed when some
  group of the user has a role allowing the action on the kind: what it then
  creates or lists is for the groups where the right holds.
- Reports are a kind of their own (`report`, `view`), one object per report.
- Deleting a group moves its objects to `main` (their membership of it is
  dropped); only masters manage groups, roles and users.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from herald.domain.decider import Decider
from herald.domain.errors import ValidationFailed
from herald.domain.events import Event, registry

MAIN = "main"

# The kinds of object and the actions a role can allow on each (the guide's "Правила доступа").
ACTIONS: Mapping[str, tuple[str, ...]] = {
    "database": ("view", "read", "edit"),
    "resource": ("view", "read", "edit"),
    "template": ("view", "edit", "moderate"),
    "fragment": ("view", "edit"),
    "segment": ("view", "read", "edit"),
    "stop_list": ("view", "read", "edit"),
    "campaign": ("view", "edit", "launch"),
    "scenario": ("view", "edit", "launch"),
    "pixel": ("view", "edit"),
    "loyalty_program": ("view", "read", "edit"),
    "virtual_sender": ("view", "edit"),
    "report": ("view",),
}
OBJECT_KINDS = tuple(ACTIONS)


def checked_rules(rules: Mapping[str, Iterable[str]], path: str = "rules") -> dict[str, tuple[str, ...]]:
    """A role's rules with known kinds and actions only, each list sorted; refuses anything else."""
    checked: dict[str, tuple[str, ...]] = {}
    for kind, actions in rules.items():
        if kind not in ACTIONS:
            raise ValidationFailed(f"unknown kind {kind!r}: one of {', '.join(ACTIONS)}", f"{path}.{kind}")
        for action in actions:
            if action not in ACTIONS[kind]:
                allowed = ", ".join(ACTIONS[kind])
                raise ValidationFailed(f"{kind} allows {allowed}, not {action!r}", f"{path}.{kind}")
        checked[kind] = tuple(sorted(set(actions)))
    return checked


@dataclass(frozen=True, slots=True)
class Role:
    groups: frozenset[str]
    rules: Mapping[str, frozenset[str]]

    def allows(self, kind: str, action: str) -> bool:
        allowed = self.rules.get(kind, frozenset())
        return action in allowed or (action == "view" and bool(allowed))


@dataclass(frozen=True, slots=True)
class Rights:
    """What one principal may do: master, or their groups and roles."""

    master: bool = False
    groups: frozenset[str] = frozenset()
    roles: tuple[Role, ...] = ()

    def allows(self, kind: str, action: str, object_groups: frozenset[str] | None) -> bool:
        """May they do `action` on an object of `kind` in `object_groups` (None: no object named)?"""
        if self.master:
            return True
        # every object is in main; a group of the user's that holds the object, and a role for it
        shared = self.groups if object_groups is None else self.groups & (object_groups | {MAIN})
        return any(role.allows(kind, action) and not role.groups.isdisjoint(shared) for role in self.roles)


# --- an object's groups (stream `access-<kind>-<id>`) -----------------------------------------------


def object_groups_stream(kind: str, object_id: str) -> str:
    return f"access-{kind}-{object_id}"


@registry.register("ObjectGroupsSet")
class ObjectGroupsSet(Event):
    kind: str
    object_id: str
    groups: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class ObjectGroupsState:
    groups: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class SetObjectGroups:
    kind: str
    object_id: str
    groups: tuple[str, ...]
    at: datetime
    known_groups: frozenset[str]


def decide(command: SetObjectGroups, state: ObjectGroupsState) -> list[Event]:
    if command.kind not in ACTIONS:
        raise ValidationFailed(f"unknown kind {command.kind!r}", "kind")
    for i, group in enumerate(command.groups):
        if group != MAIN and group not in command.known_groups:
            raise ValidationFailed(f"there is no group {group!r}", f"groups.{i}")
    groups = frozenset(command.groups) - {MAIN}  # every object is in main already
    if groups == state.groups:
        return []
    return [
        ObjectGroupsSet(
            kind=command.kind, object_id=command.object_id, groups=tuple(sorted(groups)), at=command.at
        )
    ]


def evolve(state: ObjectGroupsState, event: Event) -> ObjectGroupsState:
    if isinstance(event, ObjectGroupsSet):
        return ObjectGroupsState(frozenset(event.groups))
    return state


object_groups_decider: Decider[SetObjectGroups, ObjectGroupsState] = Decider(
    ObjectGroupsState(), decide, evolve
)
