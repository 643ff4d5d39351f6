"""Sending policies: the named policies and the account's choice among them.

Policy ids are short sequential numbers like other catalog objects. Names
are not checked for uniqueness across policies yet (the domain's
`policy_name_key` is ready for a claim when that is wanted).
"""

from __future__ import annotations

from herald.domain import sending_policies as sp
from herald.domain.errors import NotFound
from herald.services.aggregates import Aggregates, CommandContext, Loaded, Outcome
from herald.services.catalog import CatalogService


class SendingPolicyService:
    def __init__(self, catalog: CatalogService) -> None:
        self.catalog = catalog
        self.aggregates: Aggregates = catalog.aggregates

    def policy(self, policy_id: str, path: str = "policy_id") -> Loaded[sp.SendingPolicyState]:
        loaded = self.aggregates.load(sp.sending_policy_decider, sp.sending_policy_stream(policy_id))
        if not loaded.state.exists:
            raise NotFound(f"no sending policy {policy_id!r}", path)
        return loaded

    def create(self, name: str, policy: sp.SendingPolicy, context: CommandContext) -> tuple[str, Outcome]:
        now = self.aggregates.clock.now()
        seen = self._count()
        return self.catalog.create_numbered(
            sp.sending_policy_decider,
            sp.sending_policy_stream,
            seen,
            lambda i: sp.CreateSendingPolicy(i, name, policy, now),
            context,
        )

    def change(
        self,
        policy_id: str,
        command: sp.ChangeSendingPolicy | sp.DeleteSendingPolicy,
        context: CommandContext,
        expected: int | None = None,
    ) -> Outcome:
        stream = sp.sending_policy_stream(policy_id)
        return self.aggregates.execute(sp.sending_policy_decider, stream, command, context, expected)

    def set_account_policy(self, policy_id: str | None, context: CommandContext) -> Outcome:
        if policy_id is not None:
            sp.ensure_assignable(self.policy(policy_id).state, policy_id, "policy_id")
        command = sp.SetAccountSendingPolicy(policy_id, self.aggregates.clock.now())
        stream = sp.ACCOUNT_SENDING_POLICY_STREAM
        return self.aggregates.execute(sp.account_sending_policy_decider, stream, command, context)

    def _count(self) -> int:
        """How many policy ids were ever taken (ids are never reused)."""
        number = 0
        while self.aggregates.store.stream_version(sp.sending_policy_stream(str(number + 1))) != 0:
            number += 1
        return number
