"""Users, roles and groups (Settings: "Пользователи", "Роли"; streams `user-`, `role-`, `group-<id>`).

A user has a login, a name, a contact email, a password (its argon2 hash, made
by the caller: hashing draws a random salt), the master flag, the active flag,
roles and access groups. A role has a name, the groups it applies to and its
rules (`access.ACTIONS`). A group has a name; `main` exists without a stream.

Rules from the guide: a user can log in only while active and with at least
one role and one group (a master needs neither: master bypasses them); logins
are unique (`login@account`); only masters manage all of this (the API says so).

Decisions where the guide is silent: a login is 1–200 characters of letters,
digits and `._@-`, compared case-insensitively; a user or role names only
roles and groups that exist when it is saved; deleting a role or group leaves
users naming it, and it then grants nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from herald.domain.access import MAIN, checked_rules
from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry

_LOGIN = re.compile(r"^[A-Za-z0-9._@-]{1,200}$")


def user_stream(user_id: str) -> str:
    return f"user-{user_id}"


def login_stream(login: str) -> str:
    """The claim that one login names one user."""
    return f"login-{login.casefold()}"


def role_stream(role_id: str) -> str:
    return f"role-{role_id}"


def group_stream(group_id: str) -> str:
    return f"group-{group_id}"


class UserProfile(BaseModel):
    """What an administrator sets on a user (everything but the password)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    login: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    master: bool = False
    active: bool = True
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    language: str = Field("en", pattern="^(ru|en)$")


# --- events ------------------------------------------------------------------------------------


@registry.register("UserSaved")
class UserSaved(Event):
    user_id: str
    profile: UserProfile
    at: datetime


@registry.register("UserPasswordSet")
class UserPasswordSet(Event):
    user_id: str
    password_hash: str
    at: datetime


@registry.register("UserLoggedIn")
class UserLoggedIn(Event):
    user_id: str
    ip: str | None = None
    token_id: str
    at: datetime


@registry.register("UserDeleted")
class UserDeleted(Event):
    user_id: str
    at: datetime


@registry.register("RoleSaved")
class RoleSaved(Event):
    role_id: str
    name: str
    groups: tuple[str, ...]
    rules: dict[str, tuple[str, ...]]
    at: datetime


@registry.register("RoleDeleted")
class RoleDeleted(Event):
    role_id: str
    at: datetime


@registry.register("GroupSaved")
class GroupSaved(Event):
    group_id: str
    name: str
    at: datetime


@registry.register("GroupDeleted")
class GroupDeleted(Event):
    group_id: str
    at: datetime


# --- users ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserState:
    user_id: str = ""
    profile: UserProfile | None = None
    password_hash: str = ""
    deleted: bool = False
    last_login: datetime | None = None
    last_ip: str | None = None

    @property
    def exists(self) -> bool:
        return self.profile is not None and not self.deleted

    @property
    def can_log_in(self) -> bool:
        """The guide: active, and (unless master) at least one role and one group."""
        profile = self.profile
        if profile is None or self.deleted or not profile.active:
            return False
        return profile.master or (bool(profile.roles) and bool(profile.groups))


@dataclass(frozen=True, slots=True)
class SaveUser:
    user_id: str
    profile: UserProfile
    at: datetime
    known_roles: frozenset[str]
    known_groups: frozenset[str]
    create: bool = True


@dataclass(frozen=True, slots=True)
class SetPassword:
    password_hash: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordLogin:
    token_id: str
    at: datetime
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteUser:
    at: datetime


UserCommand = SaveUser | SetPassword | RecordLogin | DeleteUser


def decide_user(command: UserCommand, state: UserState) -> list[Event]:
    if isinstance(command, SaveUser):
        if command.create and state.profile is not None:
            raise AlreadyExists(f"user {command.user_id!r} exists already", "user_id")
        if not command.create and not state.exists:
            raise NotFound(f"there is no user {command.user_id!r}", "user_id")
        profile = _checked_profile(command)
        return (
            []
            if profile == state.profile
            else [UserSaved(user_id=command.user_id, profile=profile, at=command.at)]
        )
    if not state.exists:
        raise NotFound("there is no such user", "user_id")
    match command:
        case SetPassword():
            return [
                UserPasswordSet(user_id=state.user_id, password_hash=command.password_hash, at=command.at)
            ]
        case RecordLogin():
            if not state.can_log_in:
                raise RuleViolated("the user is not active, or has no role or no group", "login")
            return [
                UserLoggedIn(user_id=state.user_id, ip=command.ip, token_id=command.token_id, at=command.at)
            ]
        case DeleteUser():
            return [UserDeleted(user_id=state.user_id, at=command.at)]
    raise TypeError(f"not a user command: {command!r}")  # pragma: no cover


def _checked_profile(command: SaveUser) -> UserProfile:
    profile = command.profile
    if not _LOGIN.match(profile.login):
        raise ValidationFailed("a login is 1–200 letters, digits and . _ @ -", "login")
    for i, role in enumerate(profile.roles):
        if role not in command.known_roles:
            raise NotFound(f"there is no role {role!r}", f"roles.{i}")
    for i, group in enumerate(profile.groups):
        if group != MAIN and group not in command.known_groups:
            raise NotFound(f"there is no group {group!r}", f"groups.{i}")
    return profile.model_copy(
        update={"roles": tuple(sorted(set(profile.roles))), "groups": tuple(sorted(set(profile.groups)))}
    )


def evolve_user(state: UserState, event: Event) -> UserState:
    match event:
        case UserSaved():
            return replace(state, user_id=event.user_id, profile=event.profile)
        case UserPasswordSet():
            return replace(state, password_hash=event.password_hash)
        case UserLoggedIn():
            return replace(state, last_login=event.at, last_ip=event.ip)
        case UserDeleted():
            return replace(state, deleted=True)
    return state


user_decider: Decider[UserCommand, UserState] = Decider(UserState(), decide_user, evolve_user)


# --- roles and groups ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoleState:
    role_id: str = ""
    name: str = ""
    groups: tuple[str, ...] = ()
    rules: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    exists: bool = False


@dataclass(frozen=True, slots=True)
class SaveRole:
    role_id: str
    name: str
    groups: tuple[str, ...]
    rules: Mapping[str, tuple[str, ...]]
    at: datetime
    known_groups: frozenset[str]


@dataclass(frozen=True, slots=True)
class DeleteRole:
    at: datetime


def decide_role(command: SaveRole | DeleteRole, state: RoleState) -> list[Event]:
    if isinstance(command, DeleteRole):
        if not state.exists:
            raise NotFound("there is no such role", "role_id")
        return [RoleDeleted(role_id=state.role_id, at=command.at)]
    if not command.name.strip():
        raise ValidationFailed("a role needs a name", "name")
    if not command.groups:
        raise ValidationFailed("a role applies to at least one group", "groups")
    for i, group in enumerate(command.groups):
        if group != MAIN and group not in command.known_groups:
            raise NotFound(f"there is no group {group!r}", f"groups.{i}")
    rules = checked_rules(command.rules)
    groups = tuple(sorted(set(command.groups)))
    if state.exists and (state.name, state.groups, dict(state.rules)) == (
        command.name.strip(),
        groups,
        rules,
    ):
        return []
    return [
        RoleSaved(
            role_id=command.role_id, name=command.name.strip(), groups=groups, rules=rules, at=command.at
        )
    ]


def evolve_role(state: RoleState, event: Event) -> RoleState:
    match event:
        case RoleSaved():
            return RoleState(event.role_id, event.name, event.groups, dict(event.rules), True)
        case RoleDeleted():
            return replace(state, exists=False)
    return state


role_decider: Decider[SaveRole | DeleteRole, RoleState] = Decider(RoleState(), decide_role, evolve_role)


@dataclass(frozen=True, slots=True)
class GroupState:
    group_id: str = ""
    name: str = ""
    exists: bool = False


@dataclass(frozen=True, slots=True)
class SaveGroup:
    group_id: str
    name: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DeleteGroup:
    at: datetime


def decide_group(command: SaveGroup | DeleteGroup, state: GroupState) -> list[Event]:
    if isinstance(command, DeleteGroup):
        if not state.exists:
            raise NotFound("there is no such group", "group_id")
        return [GroupDeleted(group_id=state.group_id, at=command.at)]
    if command.group_id == MAIN:
        raise RuleViolated("the main group is the system's", "group_id")
    if not command.name.strip():
        raise ValidationFailed("a group needs a name", "name")
    if state.exists and state.name == command.name.strip():
        return []
    return [GroupSaved(group_id=command.group_id, name=command.name.strip(), at=command.at)]


def evolve_group(state: GroupState, event: Event) -> GroupState:
    match event:
        case GroupSaved():
            return GroupState(event.group_id, event.name, True)
        case GroupDeleted():
            return replace(state, exists=False)
    return state


group_decider: Decider[SaveGroup | DeleteGroup, GroupState] = Decider(
    GroupState(), decide_group, evolve_group
)
