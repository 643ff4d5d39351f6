"""The seven statuses shared by a profile's global status and each subscription (guide §1.8)."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    SUBSCRIBED = "subscribed"  # Подписан: active, can receive
    UNSUBSCRIBED = "unsubscribed"  # Отписан
    COMPLAINER = "complainer"  # Жалобщик: marked a message as spam
    HARD_BOUNCED = "hard_bounced"  # Hard bounced / "не существует": the mailbox does not exist
    UNCONFIRMED = "unconfirmed"  # Не подтверждён: double opt-in not yet confirmed
    SUSPENDED = "suspended"  # Приостановлен: paused for a while
    INVALID = "invalid"  # Не валиден: excluded for any other reason

    @property
    def is_unsafe(self) -> bool:
        """The guide's "unsafe statuses": mass updates skip them unless told otherwise."""
        return self in _UNSAFE


_UNSAFE = frozenset({Status.UNSUBSCRIBED, Status.COMPLAINER, Status.HARD_BOUNCED, Status.INVALID})
