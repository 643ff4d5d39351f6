"""Senders and virtual senders: the commands an administrator sends, with ids chosen by the caller.

Sender ids are short names the administrator picks (`main`, `warmup-1`), since
virtual-sender rules and campaign settings refer to them; the virtual sender
named `default` routes every campaign that names none.
"""

from __future__ import annotations

from herald.domain import senders as sd
from herald.domain.errors import NotFound
from herald.services.aggregates import Aggregates, CommandContext, Loaded, Outcome


class SenderService:
    def __init__(self, aggregates: Aggregates) -> None:
        self.aggregates = aggregates

    def sender(self, sender_id: str, path: str = "sender_id") -> Loaded[sd.SenderState]:
        loaded = self.aggregates.load(sd.sender_decider, sd.sender_stream(sender_id))
        if not loaded.state.exists:
            raise NotFound(f"no sender {sender_id!r}", path)
        return loaded

    def set_sender(
        self,
        sender_id: str,
        settings: sd.SenderSettings,
        secrets: sd.SenderSecrets,
        context: CommandContext,
        create: bool,
    ) -> Outcome:
        command = sd.SetSender(sender_id, settings, secrets, self.aggregates.clock.now(), create)
        return self.aggregates.execute(sd.sender_decider, sd.sender_stream(sender_id), command, context)

    def virtual_sender(self, virtual_sender_id: str) -> Loaded[sd.VirtualSenderState]:
        stream = sd.virtual_sender_stream(virtual_sender_id)
        loaded = self.aggregates.load(sd.virtual_sender_decider, stream)
        if not loaded.state.exists:
            raise NotFound(f"no virtual sender {virtual_sender_id!r}", "virtual_sender_id")
        return loaded

    def set_virtual_sender(
        self, virtual_sender_id: str, name: str, rules: tuple[sd.RouteRule, ...], context: CommandContext
    ) -> Outcome:
        named = {t.sender_id for rule in rules for t in rule.targets}
        known = frozenset(
            s for s in named if self.aggregates.load(sd.sender_decider, sd.sender_stream(s)).state.exists
        )
        command = sd.SetVirtualSender(virtual_sender_id, name, rules, known, self.aggregates.clock.now())
        stream = sd.virtual_sender_stream(virtual_sender_id)
        return self.aggregates.execute(sd.virtual_sender_decider, stream, command, context)
