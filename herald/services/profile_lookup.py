"""One profile named by a selector: `{"profile_id": …}`, `{"email": …}`, a phone or a unique custom field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from herald.domain.errors import DomainError, NotFound
from herald.domain.matching import EMAIL, EMAIL_PROFILE, PROFILE_ID, LookupKey
from herald.domain.profiles import profile_decider, profile_stream
from herald.projections.profiles import ProfilesProjection
from herald.services.aggregates import Aggregates
from herald.services.catalog import CatalogService
from herald.services.tracking import selector_key


class ProfileLookup:
    """Finds the one profile of a database a selector names (an email: the profile's own first)."""

    def __init__(self, catalog: CatalogService, profile_reads: ProfilesProjection) -> None:
        self.catalog = catalog
        self.aggregates: Aggregates = catalog.aggregates
        self.profile_reads = profile_reads

    def resolve(self, database_id: str, selector: Mapping[str, Any], path: str) -> str:
        """The profile id; NotFound (at `path`) when the database has no such profile."""
        try:
            key = selector_key(self.catalog.database(database_id), selector)
        except DomainError as error:
            raise error.at(path) from None
        if key.kind == PROFILE_ID:
            profile = self.aggregates.load(profile_decider, profile_stream(key.value)).state
            if not profile.exists or profile.database_id != database_id:
                raise NotFound(f"no profile {key.value!r} in database {database_id}", path)
            return key.value
        keys = [key, LookupKey(EMAIL_PROFILE, key.value)] if key.kind == EMAIL else [key]
        resolved = self.profile_reads.resolve(database_id, keys)
        found = [p for k in reversed(keys) for p in resolved.get(k, [])]
        if not found:
            raise NotFound(f"no profile with {key.kind} {key.value!r} in database {database_id}", path)
        return found[0]

    def existing(self, profile_id: str, path: str = "profile_id") -> str:
        """`profile_id` if it names a live profile (any database), else NotFound."""
        if not self.aggregates.load(profile_decider, profile_stream(profile_id)).state.exists:
            raise NotFound(f"no profile {profile_id!r}", path)
        return profile_id
