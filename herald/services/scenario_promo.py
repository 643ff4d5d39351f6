"""The scenario engine's promo-code port over the loyalty services.

- The assign-promo-code node (`assign`): the profile's code of the program,
  given out at most once per step (the step's request id is the binding's
  cause id), as a scenario's: `scenario_may_create` decides whether a code is
  made when none is free, and an external code service is told the scenario
  (`workflow_id`, `workflow_name`). A program that is stopped, out of its
  period or out of codes, or whose service failed, gives no code: the node
  ends the profile's journey with the reason (the guide).
- A webhook's `{loyalty.<name>.promocode}` (`held`): the codes the profile
  holds and may still use, by template name; a program it holds no code of
  renders empty (the guide: `"code": ""`).
"""

from __future__ import annotations

from herald.domain.errors import NotFound, RuleViolated
from herald.domain.promo_pool import BindingCause
from herald.services.promo_codes import PromoCodeService
from herald.services.scenario_effects import PromoAssignment


class ScenarioPromoCodes:
    def __init__(self, service: PromoCodeService) -> None:
        self.service = service

    def program_exists(self, program_id: str) -> bool:
        try:
            self.service.programs.program(program_id)
        except NotFound:
            return False
        return True

    def assign(
        self,
        program_id: str,
        profile_id: str,
        request_id: str,
        scenario_id: str = "",
        scenario_name: str = "",
    ) -> PromoAssignment:
        cause = BindingCause(kind="scenario", id=scenario_id or request_id, name=scenario_name)
        try:
            assigned = self.service.assign(program_id, profile_id, request_id, cause)
        except (RuleViolated, NotFound) as refused:  # stopped, out of period or codes, deleted, failed
            return PromoAssignment(None, refused.reason)
        return PromoAssignment(assigned.code)

    def held(self, profile_id: str) -> dict[str, str]:
        """The profile's usable codes by program template name."""
        now = self.service.aggregates.clock.now()
        codes: dict[str, str] = {}
        for doc in self.service.projection.programs():
            program_id, shortcode = doc["program_id"], doc["settings"]["shortcode"]
            pool, _ = self.service.pool(program_id)
            holding = pool.held(profile_id, now)
            if holding is not None:
                codes[shortcode] = self.service.code_of(program_id, pool, holding.seq)
        return codes
