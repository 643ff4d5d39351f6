"""Senders and virtual senders: the commands an administrator sends, with ids chosen by the caller.

Sender ids are short names the administrator picks (`main`, `warmup-1`), since
virtual-sender rules and campaign settings refer to them; the virtual sender
named `default` routes every campaign that names none.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.domain import senders as sd
from herald.domain.errors import NotFound, ValidationFailed
from herald.domain.secrets import SealedSecret
from herald.infra.secret_box import SecretBox
from herald.services.aggregates import Aggregates, CommandContext, Loaded, Outcome

RESEAL = CommandContext(actor="system", source="secrets")


@dataclass(frozen=True, slots=True)
class PlainSenderSecrets:
    """Secrets as an administrator gives them (in clear, never stored so); empty keeps the stored one."""

    password: str = field(default="", repr=False)
    dkim_private_key: str = field(default="", repr=False)
    service_account: str = field(default="", repr=False)
    signing_key: str = field(default="", repr=False)
    bot_token: str = field(default="", repr=False)


class SenderService:
    def __init__(self, aggregates: Aggregates, box: SecretBox) -> None:
        self.aggregates = aggregates
        self.box = box

    def sender(self, sender_id: str, path: str = "sender_id") -> Loaded[sd.SenderState]:
        loaded = self.aggregates.load(sd.sender_decider, sd.sender_stream(sender_id))
        if not loaded.state.exists:
            raise NotFound(f"no sender {sender_id!r}", path)
        return loaded

    def set_sender(
        self,
        sender_id: str,
        settings: sd.SenderSettings,
        given: PlainSenderSecrets,
        context: CommandContext,
        create: bool,
    ) -> Outcome:
        if given.signing_key:
            check_signing_key(given.signing_key)
        if settings.apns is not None and settings.apns.ca_file:
            check_ca_file(settings.apns.ca_file)
        stream = sd.sender_stream(sender_id)
        stored = self.aggregates.load(sd.sender_decider, stream).state.secrets
        secrets = sd.SenderSecrets(
            **{
                name: self.box.seal_changed(
                    getattr(given, name), getattr(stored, name), _context(sender_id, name)
                )
                for name in sd.SECRET_NAMES
            }
        )
        command = sd.SetSender(sender_id, settings, secrets, self.aggregates.clock.now(), create)
        return self.aggregates.execute(sd.sender_decider, stream, command, context)

    def for_sending(self, sender_id: str) -> sd.OpenedSender:
        """The sender with its secrets opened; NotFound when there is none."""
        return self.opened(self.sender(sender_id))

    def opened(self, loaded: Loaded[sd.SenderState]) -> sd.OpenedSender:
        """`loaded` with its secrets opened; a secret an old event held in clear is sealed first."""
        state = loaded.state
        if any(getattr(state.secrets, n).withheld for n in state.secrets.names()):
            loaded = self.reseal(loaded)
            state = loaded.state
        values = {
            n: self.box.open(getattr(state.secrets, n), _context(state.sender_id, n))
            for n in state.secrets.names()
        }
        return sd.OpenedSender(state, **{n: values.get(n, "") for n in sd.SECRET_NAMES})

    def reseal(self, loaded: Loaded[sd.SenderState]) -> Loaded[sd.SenderState]:
        """Seal again under the current key what an old event held in clear or an older key sealed.

        A withheld secret's clear text is read from the stored bytes of the last event that held it.
        The request id is derived from the stream's version, so processes that reseal at once append
        one event between them."""
        state = loaded.state
        if state.settings is None:
            return loaded
        cleartext = _stored_cleartext(self.aggregates, loaded.stream)
        fresh: dict[str, SealedSecret] = {}
        for name in state.secrets.names():
            sealed: SealedSecret = getattr(state.secrets, name)
            where = _context(state.sender_id, name)
            if sealed.withheld:
                fresh[name] = self.box.seal(cleartext[name], where)
            elif not self.box.is_current(sealed):
                fresh[name] = self.box.seal(self.box.open(sealed, where), where)
        if not fresh:
            return loaded
        command = sd.SetSender(
            state.sender_id, state.settings, sd.SenderSecrets(**fresh), self.aggregates.clock.now()
        )
        once = CommandContext(RESEAL.actor, RESEAL.source, request_id=f"reseal:{loaded.version}")
        self.aggregates.execute(sd.sender_decider, loaded.stream, command, once)
        return self.aggregates.load(sd.sender_decider, loaded.stream)

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


def _context(sender_id: str, name: str) -> str:
    return f"{sd.sender_stream(sender_id)}.{name}"


def _stored_cleartext(aggregates: Aggregates, stream: str) -> dict[str, str]:
    """The secrets the stream's events of schema version 1 held in clear, the last value of each."""
    found: dict[str, str] = {}
    for event in aggregates.store.read_stream(stream):
        if event.schema_version == 1:
            given = event.data.get("secrets", {})
            found.update({n: given[n] for n in sd.SECRET_NAMES if given.get(n)})
    return found


def check_signing_key(pem: str) -> None:
    """An APNs key must be what Apple issues: a P-256 private key in PEM (the .p8 file), so a wrong
    paste is refused here rather than every push failing later."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ValidationFailed(
            "the signing key is not a PEM private key (the .p8 file)", "signing_key"
        ) from None
    if not (isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)):
        raise ValidationFailed("an APNs signing key is a P-256 (ES256) key", "signing_key")


def check_ca_file(path: str) -> None:
    """An APNs sender's CA bundle must load as the gateway loads it (a readable file of PEM
    certificates), so a wrong path is refused at save rather than every push failing its TLS."""
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:
        raise ValidationFailed("the CA file holds no PEM certificate", "apns.ca_file") from None
    except OSError as error:
        reason = error.strerror or "cannot be read"
        raise ValidationFailed(f"the CA file cannot be read: {reason}", "apns.ca_file") from None
