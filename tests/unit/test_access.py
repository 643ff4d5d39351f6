"""Rights: roles allow actions on kinds, groups decide which objects; master bypasses both. Users' rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.domain import users as u
from herald.domain.access import MAIN, Rights, Role, SetObjectGroups, checked_rules, object_groups_decider
from herald.domain.errors import NotFound, RuleViolated, ValidationFailed
from tests.unit.decider_table import then, then_error

AT = datetime(2026, 3, 2, tzinfo=UTC)
EDIT_DATABASES_IN_SALES = Role(frozenset({"sales"}), {"database": frozenset({"edit"})})
VIEW_ALL_CAMPAIGNS = Role(frozenset({MAIN}), {"campaign": frozenset({"view"})})


@pytest.mark.parametrize(
    ("rights", "kind", "action", "groups", "allowed"),
    [
        (Rights(master=True), "database", "edit", frozenset({"x"}), True),
        (
            Rights(frozenset({"sales"}), frozenset({"sales"}), (EDIT_DATABASES_IN_SALES,)),
            "database",
            "edit",
            frozenset({"sales"}),
            True,
        ),
        (
            Rights(False, frozenset({"sales"}), (EDIT_DATABASES_IN_SALES,)),
            "database",
            "view",
            frozenset({"sales"}),
            True,
        ),
        (
            Rights(False, frozenset({"sales"}), (EDIT_DATABASES_IN_SALES,)),
            "database",
            "read",
            frozenset({"sales"}),
            False,
        ),
        (
            Rights(False, frozenset({"sales"}), (EDIT_DATABASES_IN_SALES,)),
            "database",
            "edit",
            frozenset(),
            False,
        ),
        (Rights(False, frozenset({"sales"}), (EDIT_DATABASES_IN_SALES,)), "database", "edit", None, True),
        (
            Rights(False, frozenset({"support"}), (EDIT_DATABASES_IN_SALES,)),
            "database",
            "edit",
            frozenset({"sales"}),
            False,
        ),
        (
            Rights(False, frozenset({"sales"}), (EDIT_DATABASES_IN_SALES,)),
            "segment",
            "edit",
            frozenset({"sales"}),
            False,
        ),
        (
            Rights(False, frozenset({MAIN}), (VIEW_ALL_CAMPAIGNS,)),
            "campaign",
            "view",
            frozenset({"any"}),
            True,
        ),
        (
            Rights(False, frozenset({"sales"}), (VIEW_ALL_CAMPAIGNS,)),
            "campaign",
            "view",
            frozenset({"sales"}),
            False,
        ),
        (Rights(False, frozenset({MAIN}), (VIEW_ALL_CAMPAIGNS,)), "campaign", "launch", frozenset(), False),
    ],
    ids=[
        "master",
        "role-in-the-objects-group",
        "edit-implies-view",
        "edit-is-not-read",
        "object-outside-the-group",
        "no-object-named",
        "user-lacks-the-roles-group",
        "other-kind",
        "main-role-reaches-everything",
        "main-role-needs-main-among-the-users-groups",
        "view-is-not-launch",
    ],
)
def test_rights(rights: Rights, kind: str, action: str, groups: frozenset[str] | None, allowed: bool) -> None:
    assert rights.allows(kind, action, groups) is allowed


def test_rules_name_known_kinds_and_their_actions() -> None:
    assert checked_rules({"campaign": ["launch", "view", "view"]}) == {"campaign": ("launch", "view")}
    with pytest.raises(ValidationFailed) as bad:
        checked_rules({"campaign": ["read"]})
    assert bad.value.path == "rules.campaign"
    with pytest.raises(ValidationFailed):
        checked_rules({"spaceship": ["view"]})


def test_object_groups_are_known_groups_and_main_is_implied() -> None:
    command = SetObjectGroups("database", "1", ("main", "sales"), AT, frozenset({"sales"}))
    [event] = then(object_groups_decider, [], command)
    assert event.groups == ("sales",)  # type: ignore[attr-defined]
    assert then(object_groups_decider, [event], command) == []
    then_error(
        object_groups_decider,
        [],
        SetObjectGroups("database", "1", ("x",), AT, frozenset()),
        ValidationFailed,
        "groups.0",
    )


PROFILE = u.UserProfile(login="ann@acme", roles=("r1",), groups=("sales",))


def test_a_user_names_existing_roles_and_groups_and_logs_in_only_when_allowed() -> None:
    save = u.SaveUser("u1", PROFILE, AT, frozenset({"r1"}), frozenset({"sales"}))
    [saved] = then(u.user_decider, [], save)
    then_error(
        u.user_decider,
        [],
        u.SaveUser("u1", PROFILE, AT, frozenset(), frozenset({"sales"})),
        NotFound,
        "roles.0",
    )
    bad_login = u.SaveUser(
        "u1", PROFILE.model_copy(update={"login": "a b"}), AT, frozenset({"r1"}), frozenset({"sales"})
    )
    then_error(u.user_decider, [], bad_login, ValidationFailed, "login")
    assert then(u.user_decider, [saved], u.RecordLogin("t1", AT, "10.0.0.1"))
    inactive = u.UserSaved(user_id="u1", profile=PROFILE.model_copy(update={"active": False}), at=AT)
    then_error(u.user_decider, [inactive], u.RecordLogin("t1", AT), RuleViolated, "login")
    no_groups = u.UserSaved(user_id="u1", profile=PROFILE.model_copy(update={"groups": ()}), at=AT)
    then_error(u.user_decider, [no_groups], u.RecordLogin("t1", AT), RuleViolated, "login")
    master = u.UserSaved(user_id="u1", profile=u.UserProfile(login="boss", master=True), at=AT)
    assert then(u.user_decider, [master], u.RecordLogin("t1", AT))
