"""Scoring: number fields changed on request (the API) and by rules.

`change` takes a request's changes: a cause id (the API's `request_id`)
makes a repeated call append nothing new. Scoring rules are kept in the
catalog read model; `score` is what the rules processor
(`processors/scoring_rules.py`) calls for a matching event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from herald.domain import scoring as sc
from herald.domain.errors import DomainError, NotFound
from herald.domain.profiles import profile_decider, profile_stream
from herald.projections.catalog import SCORING_RULE
from herald.services.aggregates import CommandContext, Outcome
from herald.services.catalog import CatalogService

log = logging.getLogger(__name__)


class ScoringService:
    def __init__(self, catalog: CatalogService) -> None:
        self.catalog = catalog
        self.aggregates = catalog.aggregates

    def change(
        self,
        profile_id: str,
        changes: Sequence[sc.ScoreChange],
        cause_id: str | None,
        source: str = "scenario",
        context: CommandContext | None = None,
    ) -> Outcome:
        """Add to, subtract from or set the profile's number fields; `cause_id` makes a retry a no-op."""
        state = self.aggregates.load(profile_decider, profile_stream(profile_id)).state
        if not state.exists:
            raise NotFound(f"no profile {profile_id!r}", "profile_id")
        base = context or CommandContext(actor=source, source=source)
        request_id = f"score:{cause_id}" if cause_id else base.request_id
        context = CommandContext(base.actor, base.source, base.correlation_id, request_id, base.extra)
        command = sc.ChangeNumbers(
            profile_id,
            self.catalog.database(state.database_id),
            tuple(changes),
            self.aggregates.clock.now(),
            source,
        )
        return self.aggregates.execute(sc.scoring_decider, profile_stream(profile_id), command, context)

    def score(
        self, profile_id: str, database_id: str, changes: Sequence[sc.ScoreChange], cause_id: str
    ) -> None:
        """Apply the rules' changes for one event (rounded for int fields); a refusal is logged."""
        try:
            database = self.catalog.database(database_id)
            fitted = [
                c.model_copy(
                    update={"amount": sc.rounded_for(sc.number_field(database, c.field, "field"), c.amount)}
                )
                for c in changes
            ]
            self.change(profile_id, fitted, cause_id, "scoring_rule")
        except DomainError as refused:  # the profile was deleted, the field removed since the rule was made
            log.warning("scoring rules not applied to %s: %s", profile_id, refused.reason)

    # --- rules ---------------------------------------------------------------------------------

    def rule(self, rule_id: str) -> sc.RuleState:
        state = self.aggregates.load(sc.rule_decider, sc.rule_stream(rule_id)).state
        if not state.exists:
            raise NotFound(f"no scoring rule {rule_id!r}", "rule_id")
        return state

    def create_rule(self, settings: sc.ScoringRuleSettings, context: CommandContext) -> tuple[str, Outcome]:
        database = self.catalog.database(settings.database_id)
        seen = len(self.catalog.projection.objects(SCORING_RULE, include_deleted=True))
        now = self.aggregates.clock.now()
        return self.catalog.create_numbered(
            sc.rule_decider,
            sc.rule_stream,
            seen,
            lambda i: sc.CreateRule(i, settings, database, now),
            context,
        )

    def change_rule(
        self,
        rule_id: str,
        settings: sc.ScoringRuleSettings,
        context: CommandContext,
        expected: int | None = None,
    ) -> Outcome:
        database = self.catalog.database(settings.database_id)
        command = sc.ChangeRule(rule_id, settings, database, self.aggregates.clock.now())
        return self.aggregates.execute(sc.rule_decider, sc.rule_stream(rule_id), command, context, expected)

    def delete_rule(self, rule_id: str, context: CommandContext) -> Outcome:
        command = sc.DeleteRule(rule_id, self.aggregates.clock.now())
        return self.aggregates.execute(sc.rule_decider, sc.rule_stream(rule_id), command, context)

    def rules(self, database_id: str) -> list[sc.RuleState]:
        """The live rules of a database, as the catalog read model has them."""
        found = []
        for doc in self.catalog.projection.objects(SCORING_RULE):
            state = self.aggregates.load(sc.rule_decider, sc.rule_stream(doc["rule_id"])).state
            if state.exists and state.settings is not None and state.settings.database_id == database_id:
                found.append(state)
        return found
