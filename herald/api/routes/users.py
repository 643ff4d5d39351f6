"""Users, roles, access groups and objects' groups (master only), and the login that issues a token."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.domain.users import UserProfile
from herald.services.users import LoginRefused

_Strict = ConfigDict(extra="forbid")


class UserBody(UserProfile):
    password: str | None = Field(None, min_length=8, max_length=1024, description="set or change it")


class PasswordBody(BaseModel):
    model_config = _Strict
    password: str = Field(min_length=8, max_length=1024)


class LoginBody(BaseModel):
    model_config = _Strict
    login: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class RoleBody(BaseModel):
    model_config = _Strict
    name: str = Field(min_length=1, max_length=200)
    groups: list[str] = Field(
        min_length=1, description="the groups the role applies to ('main': all objects)"
    )
    rules: dict[str, list[str]] = Field(description="kind → actions (view, read, edit, launch, moderate)")


class GroupBody(BaseModel):
    model_config = _Strict
    name: str = Field(min_length=1, max_length=200)


class ObjectGroupsBody(BaseModel):
    model_config = _Strict
    groups: list[str]


def _profile(body: UserBody) -> UserProfile:
    return UserProfile.model_validate(body.model_dump(exclude={"password"}))


async def create_user(call: Call) -> dict[str, Any]:
    body: UserBody = call.body
    user_id, outcome = call.herald.users.create_user(_profile(body), body.password, call.context)
    return {"user_id": user_id, **outcome.to_json()}


async def update_user(call: Call) -> dict[str, Any]:
    body: UserBody = call.body
    user_id = call.path_param("user_id")
    outcome = call.herald.users.update_user(user_id, _profile(body), call.context)
    if body.password is not None:
        outcome = call.herald.users.set_password(user_id, body.password, call.context)
    return outcome.to_json()


async def set_password(call: Call) -> dict[str, Any]:
    return call.herald.users.set_password(
        call.path_param("user_id"), call.body.password, call.context
    ).to_json()


async def get_user(call: Call) -> dict[str, Any]:
    state = call.herald.users.user(call.path_param("user_id"))
    assert state.profile is not None
    last = state.last_login.isoformat() if state.last_login else None
    return {
        "user_id": state.user_id,
        **state.profile.model_dump(),
        "last_login": last,
        "last_ip": state.last_ip,
    }


async def list_users(call: Call) -> dict[str, Any]:
    return {"users": call.herald.projections.access.users()}


async def delete_user(call: Call) -> dict[str, Any]:
    return call.herald.users.delete_user(call.path_param("user_id"), call.context).to_json()


async def login(call: Call) -> dict[str, Any]:
    body: LoginBody = call.body
    ip = call.request.client.host if call.request.client else None
    try:
        token_id, secret, outcome = call.herald.users.login(body.login, body.password, ip)
    except LoginRefused as refused:
        raise HttpError(401, str(refused), "login") from None
    return {"token_id": token_id, "token": secret, **outcome.to_json()}


async def save_role(call: Call) -> dict[str, Any]:
    body: RoleBody = call.body
    role_id, outcome = call.herald.users.save_role(
        call.request.path_params.get("role_id"), body.name, body.groups, body.rules, call.context
    )
    return {"role_id": role_id, **outcome.to_json()}


async def list_roles(call: Call) -> dict[str, Any]:
    return {"roles": call.herald.projections.access.roles()}


async def delete_role(call: Call) -> dict[str, Any]:
    return call.herald.users.delete_role(call.path_param("role_id"), call.context).to_json()


async def save_group(call: Call) -> dict[str, Any]:
    group_id, outcome = call.herald.users.save_group(
        call.request.path_params.get("group_id"), call.body.name, call.context
    )
    return {"group_id": group_id, **outcome.to_json()}


async def list_groups(call: Call) -> dict[str, Any]:
    return {"groups": call.herald.projections.access.groups()}


async def delete_group(call: Call) -> dict[str, Any]:
    return call.herald.users.delete_group(call.path_param("group_id"), call.context).to_json()


async def set_object_groups(call: Call) -> dict[str, Any]:
    return call.herald.users.set_object_groups(
        call.path_param("kind"), call.path_param("object_id"), call.body.groups, call.context
    ).to_json()


async def object_groups(call: Call) -> dict[str, Any]:
    groups = call.herald.projections.access.object_groups(
        call.path_param("kind"), call.path_param("object_id")
    )
    return {"groups": ["main", *sorted(groups)]}


U = "/api/v1/users/{user_id}"
OG = "/api/v1/access/{kind}/{object_id}/groups"
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/login",
        login,
        "Log in with a login and password: a token acting with the user's rights",
        "users",
        body=LoginBody,
        role="public",
    ),
    Endpoint(
        "POST",
        "/api/v1/users",
        create_user,
        "Create a user",
        "users",
        body=UserBody,
        role="admin",
        status=201,
    ),
    Endpoint("GET", "/api/v1/users", list_users, "List users", "users", role="admin"),
    Endpoint("GET", U, get_user, "A user, with the last login's time and address", "users", role="admin"),
    Endpoint(
        "PUT",
        U,
        update_user,
        "Change a user (roles, groups, master, active)",
        "users",
        body=UserBody,
        role="admin",
    ),
    Endpoint(
        "PUT",
        U + "/password",
        set_password,
        "Set a user's password",
        "users",
        body=PasswordBody,
        role="admin",
    ),
    Endpoint("DELETE", U, delete_user, "Delete a user (their tokens stop working)", "users", role="admin"),
    Endpoint(
        "POST", "/api/v1/roles", save_role, "Create a role", "users", body=RoleBody, role="admin", status=201
    ),
    Endpoint("GET", "/api/v1/roles", list_roles, "List roles", "users", role="admin"),
    Endpoint(
        "PUT", "/api/v1/roles/{role_id}", save_role, "Replace a role", "users", body=RoleBody, role="admin"
    ),
    Endpoint("DELETE", "/api/v1/roles/{role_id}", delete_role, "Delete a role", "users", role="admin"),
    Endpoint(
        "POST",
        "/api/v1/groups",
        save_group,
        "Create an access group",
        "users",
        body=GroupBody,
        role="admin",
        status=201,
    ),
    Endpoint("GET", "/api/v1/groups", list_groups, "List access groups (main first)", "users", role="admin"),
    Endpoint(
        "PUT",
        "/api/v1/groups/{group_id}",
        save_group,
        "Rename an access group",
        "users",
        body=GroupBody,
        role="admin",
    ),
    Endpoint(
        "DELETE",
        "/api/v1/groups/{group_id}",
        delete_group,
        "Delete a group (its objects stay in main)",
        "users",
        role="admin",
    ),
    Endpoint(
        "PUT",
        OG,
        set_object_groups,
        "Set an object's access groups",
        "users",
        body=ObjectGroupsBody,
        role="admin",
    ),
    Endpoint("GET", OG, object_groups, "An object's access groups", "users", role="admin"),
]
