"""Users, roles and groups: saving them, passwords (argon2), logging in, and objects' groups.

Passwords are hashed with argon2id (`argon2-cffi`, its default parameters: 64 MiB, 3 passes):
a slow, memory-hard hash, because a login's secret is chosen by a person, unlike API tokens,
which are random and stored as SHA-256. A login verifies the password against the user's own
stream (never a read model), refuses a user who may not log in, issues a user's token that
expires after `session_hours` and records `UserLoggedIn` with the address.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from herald.domain import access, users
from herald.domain.api_tokens import IssueApiToken, api_token_decider, api_token_stream
from herald.domain.errors import AlreadyExists, NotFound
from herald.infra.event_store import NO_STREAM, StreamAppend
from herald.projections.access import AccessProjection
from herald.services.aggregates import Aggregates, CommandContext, Outcome
from herald.services.tokens import token_hash

SESSION_HOURS = 12
_HASHER = PasswordHasher()


class LoginRefused(Exception):
    """Wrong login or password, or a user who may not log in (HTTP 401, one message for all)."""


class UserService:
    def __init__(
        self, aggregates: Aggregates, projection: AccessProjection, session_hours: int = SESSION_HOURS
    ) -> None:
        self.aggregates = aggregates
        self.projection = projection
        self.session_hours = session_hours

    # --- users ---------------------------------------------------------------------------------

    def create_user(
        self, profile: users.UserProfile, password: str | None, context: CommandContext
    ) -> tuple[str, Outcome]:
        if self.projection.user_id_of(profile.login) is not None:
            raise AlreadyExists(f"the login {profile.login!r} is taken", "login")
        user_id = self.aggregates.ids.token(8)
        now = self.aggregates.clock.now()
        command = self._save(user_id, profile, create=True)
        events = list(users.decide_user(command, users.UserState()))
        if password is not None:
            events.append(
                users.UserPasswordSet(user_id=user_id, password_hash=_HASHER.hash(password), at=now)
            )
        stream = users.user_stream(user_id)
        claim = users.login_stream(profile.login)
        claimed = [users.UserSaved(user_id=user_id, profile=profile, at=now)]
        # the login's claim stream makes two users with one login collide on its version
        appends = [
            StreamAppend(stream, self.aggregates.new_events(stream, events, context), NO_STREAM),
            StreamAppend(claim, self.aggregates.new_events(claim, claimed, context), NO_STREAM),
        ]
        results = self.aggregates.store.append_many(appends)
        new = tuple(e.event_id for e in appends[0].events)
        return user_id, Outcome(stream, new, results[0].stream_version)

    def update_user(self, user_id: str, profile: users.UserProfile, context: CommandContext) -> Outcome:
        other = self.projection.user_id_of(profile.login)
        if other is not None and other != user_id:
            raise AlreadyExists(f"the login {profile.login!r} is taken", "login")
        return self._execute(user_id, self._save(user_id, profile, create=False), context)

    def _save(self, user_id: str, profile: users.UserProfile, create: bool) -> users.SaveUser:
        now = self.aggregates.clock.now()
        known_roles, known_groups = self.projection.known_roles(), self.projection.known_groups()
        return users.SaveUser(user_id, profile, now, known_roles, known_groups, create)

    def set_password(self, user_id: str, password: str, context: CommandContext) -> Outcome:
        command = users.SetPassword(_HASHER.hash(password), self.aggregates.clock.now())
        return self._execute(user_id, command, context)

    def delete_user(self, user_id: str, context: CommandContext) -> Outcome:
        return self._execute(user_id, users.DeleteUser(self.aggregates.clock.now()), context)

    def _execute(self, user_id: str, command: users.UserCommand, context: CommandContext) -> Outcome:
        return self.aggregates.execute(users.user_decider, users.user_stream(user_id), command, context)

    def login(self, login: str, password: str, ip: str | None) -> tuple[str, str, Outcome]:
        """(token id, the token shown once, outcome) for a right login and password, else LoginRefused."""
        user_id = self.projection.user_id_of(login)
        state = self.aggregates.load(users.user_decider, users.user_stream(user_id or "-")).state
        if user_id is None or not state.password_hash or not _verified(state.password_hash, password):
            raise LoginRefused("wrong login or password")
        if not state.can_log_in:
            raise LoginRefused("the user is not active, or has no role or no group")
        now = self.aggregates.clock.now()
        token_id = self.aggregates.ids.token(8)
        secret = f"hrld_{secrets.token_urlsafe(32)}"
        issue = IssueApiToken(
            token_id=token_id,
            name=f"login {now:%Y-%m-%d %H:%M}",
            role="user",
            token_hash=token_hash(secret),
            at=now,
            user_id=user_id,
            expires_at=now + timedelta(hours=self.session_hours),
        )
        context = CommandContext(actor=f"user:{user_id}", source="login", extra={"ip": ip} if ip else {})
        outcome = self.aggregates.execute(api_token_decider, api_token_stream(token_id), issue, context)
        self._execute(user_id, users.RecordLogin(token_id, now, ip), context)
        return token_id, secret, outcome

    def user(self, user_id: str) -> users.UserState:
        state = self.aggregates.load(users.user_decider, users.user_stream(user_id)).state
        if not state.exists:
            raise NotFound(f"there is no user {user_id!r}", "user_id")
        return state

    # --- roles and groups ------------------------------------------------------------------------

    def save_role(
        self,
        role_id: str | None,
        name: str,
        groups: Sequence[str],
        rules: Mapping[str, Sequence[str]],
        context: CommandContext,
    ) -> tuple[str, Outcome]:
        role_id = role_id or self.aggregates.ids.token(6)
        now = self.aggregates.clock.now()
        command = users.SaveRole(
            role_id,
            name,
            tuple(groups),
            {k: tuple(v) for k, v in rules.items()},
            now,
            self.projection.known_groups(),
        )
        return role_id, self.aggregates.execute(
            users.role_decider, users.role_stream(role_id), command, context
        )

    def delete_role(self, role_id: str, context: CommandContext) -> Outcome:
        command = users.DeleteRole(self.aggregates.clock.now())
        return self.aggregates.execute(users.role_decider, users.role_stream(role_id), command, context)

    def save_group(self, group_id: str | None, name: str, context: CommandContext) -> tuple[str, Outcome]:
        group_id = group_id or self.aggregates.ids.token(6)
        command = users.SaveGroup(group_id, name, self.aggregates.clock.now())
        return group_id, self.aggregates.execute(
            users.group_decider, users.group_stream(group_id), command, context
        )

    def delete_group(self, group_id: str, context: CommandContext) -> Outcome:
        command = users.DeleteGroup(self.aggregates.clock.now())
        return self.aggregates.execute(users.group_decider, users.group_stream(group_id), command, context)

    def set_object_groups(
        self, kind: str, object_id: str, groups: Sequence[str], context: CommandContext
    ) -> Outcome:
        command = access.SetObjectGroups(
            kind, object_id, tuple(groups), self.aggregates.clock.now(), self.projection.known_groups()
        )
        stream = access.object_groups_stream(kind, object_id)
        return self.aggregates.execute(access.object_groups_decider, stream, command, context)


def _verified(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
