"""Who a request acts as."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """The actor a request's events name and the role its token has."""

    actor: str  # `admin`, `token:<id>`, `anonymous` on public routes
    role: str  # admin, write, read, track; `public` on routes that take no token
