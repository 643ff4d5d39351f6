"""The send gate of a campaign's messages: the policy in force and what it checks against.

`domain/send_gate.py` decides each message (profile status, subscription, stop lists, one
message per contact, the sending policy); this builds one for a campaign's settings at an
instant, with the effective policy (the account's, the resource's, the campaign's:
`domain/sending_policies.effective_policy`) counted per the profile's local day from the
`send_history` projection, and the stop lists the catalog keeps. Every way a message is
decided goes through it: a run's chunks, a trigger's fire, a test send, a scenario's node.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from herald.domain import campaigns as cp
from herald.domain import sending_policies as sp
from herald.domain.profiles import ProfileState
from herald.domain.send_gate import SendGate
from herald.domain.stop_lists import check as stop_list_check
from herald.infra.aggregates import Aggregates
from herald.messages.ports import Catalog
from herald.projections.send_history import SendHistoryProjection


class SendGates:
    def __init__(
        self, aggregates: Aggregates, catalog: Catalog, history: SendHistoryProjection, account_timezone: str
    ) -> None:
        self.aggregates = aggregates
        self.catalog = catalog
        self.history = history
        self.account_timezone = account_timezone

    def gate(
        self,
        settings: cp.CampaignSettings,
        at: datetime,
        is_test: bool = False,
        policy: sp.SendingPolicy | None = None,
    ) -> SendGate:
        """The send gate of one run (its contacts used once); `policy`: the campaign's, if already known."""
        policy = policy if policy is not None else self.policy(settings)
        lookup = self.catalog.stop_list_lookup

        def stop_list(database_id: str, channel: str, contact: str) -> str | None:
            hit = stop_list_check(lookup, channel=channel, contact=contact, database_id=database_id)
            return None if hit is None else f"{hit.level} stop list {hit.list_id}"

        def policy_check(profile: ProfileState, subscription: Any) -> str | None:
            if policy == sp.UNLIMITED:
                return None
            today = self.local_day(profile, at)
            contact = (
                None
                if settings.channel == "push"
                else self.history.contact_history(subscription.key.contact, today)
            )
            return sp.violation(
                policy,
                self.history.profile_history(profile.profile_id, today),
                contact,
                today,
                settings.resource_id,
                settings.channel,
            )

        return SendGate(
            settings.resource_id,
            settings.channel,
            stop_list,
            policy_check,
            is_test=is_test,
            check_uniqueness=settings.check_contact_uniqueness,
        )

    def policy(self, settings: cp.CampaignSettings) -> sp.SendingPolicy:
        """The policy in force for the campaign's messages."""
        resource = self.catalog.resource(settings.resource_id)
        account_id = self.aggregates.load(
            sp.account_sending_policy_decider, sp.ACCOUNT_SENDING_POLICY_STREAM
        ).state.policy_id
        resource_id = resource.settings.sending_policy_id if resource.settings else None
        return sp.effective_policy(
            self._named(account_id),
            self._named(resource_id),
            self._named(settings.sending_policy_id),
            settings.apply_resource_policy,
        )

    def _named(self, policy_id: str | None) -> sp.SendingPolicy | None:
        if policy_id is None:
            return None
        state = self.aggregates.load(sp.sending_policy_decider, sp.sending_policy_stream(policy_id)).state
        return state.policy if state.exists else None

    def local_day(self, profile: ProfileState, at: datetime) -> date:
        return sp.local_day(at, profile.timezone, self.account_timezone)
