"""Profile exports as jobs: each chunk writes its profiles' rows to a part, the end assembles the file.

Rows come from the profile cards (the read model the API shows), so an export
reads nothing from the log; the audience is frozen at the first chunk like a
mass update's. Progress is the profiles written of the audience's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from herald.domain import jobs
from herald.domain.errors import ValidationFailed
from herald.domain.exports import ExportSpec, check_export, columns
from herald.infra.export_files import ExportFiles, csv_line
from herald.projections.profiles import ProfilesProjection
from herald.services.aggregates import CommandContext, Loaded, Outcome
from herald.services.bulk import JobAudience
from herald.services.catalog import CatalogService
from herald.services.jobs import JobService

CHUNK = 2000


class Exports:
    kind = jobs.JobKind.EXPORT

    def __init__(
        self,
        job_service: JobService,
        catalog: CatalogService,
        profiles: ProfilesProjection,
        audience: JobAudience,
        files: ExportFiles,
    ) -> None:
        self.jobs = job_service
        self.catalog = catalog
        self.profiles = profiles
        self.audience = audience
        self.files = files
        self.chunk = CHUNK
        job_service.runners[self.kind] = self

    def start(self, database_id: str, spec: ExportSpec, context: CommandContext) -> tuple[str, Outcome]:
        checked = check_export(spec, self.catalog.database(database_id))
        if spec.source.kind == "database" and spec.source.id != database_id:
            raise ValidationFailed("a database source is the job's own database", "source.id")
        if spec.source.kind == "segment":
            self.audience.segment_members(spec.source.id)
        for i, resource_id in enumerate(spec.resource_ids or ()):
            self.catalog.resource(resource_id, f"resource_ids.{i}")
        return self.jobs.start(self.kind, database_id, checked.model_dump(mode="json"), context)

    def run_chunk(self, job: Loaded[jobs.JobState], context: CommandContext) -> None:
        state = job.state
        spec = ExportSpec.model_validate(state.spec)
        offset = int(state.cursor or 0)
        ids, size = self.audience.page(state, spec.source, offset, self.chunk)
        if not ids:
            path = self.files.assemble(state.job_id, spec.format, columns(spec))
            result = {
                "format": spec.format,
                "bytes": path.stat().st_size,
                "rows": state.counts.get("exported", 0),
            }
            self.jobs.complete(state.job_id, context, result)
            return
        cards = [card for card in map(self.profiles.card, ids) if _live(card)]
        lines = [_line(spec, card) for card in cards]
        self.files.write_part(state.job_id, state.chunks + 1, b"".join(lines))
        command = jobs.RecordChunk(
            chunk=state.chunks + 1,
            cursor=str(offset + len(ids)),
            counts={"exported": len(cards), "skipped": len(ids) - len(cards)},
            at=self.jobs.aggregates.clock.now(),
            progress={"profiles_done": offset + len(ids), "profiles_total": size},
        )
        append = self.jobs.chunk_append(job, command, context)
        self.jobs.aggregates.store.append_many([append])


def _live(card: Mapping[str, Any] | None) -> bool:
    return card is not None and not card["deleted"] and not card["merged_into"]


def _line(spec: ExportSpec, card: Mapping[str, Any]) -> bytes:
    fields = card["fields"]
    values = [fields.get(name) for name in spec.fields or ()]
    subscriptions = _subscriptions(card["subscriptions"], spec.resource_ids) if spec.subscriptions else None
    if spec.format == "jsonl":
        record = {"profile_id": card["profile_id"], **dict(zip(spec.fields or (), values, strict=True))}
        record["global_status"] = card["global_status"]
        if subscriptions is not None:
            record["subscriptions"] = subscriptions
        return orjson.dumps(record) + b"\n"
    cells = [card["profile_id"], *map(_cell, values), card["global_status"]]
    if subscriptions is not None:
        cells.append(orjson.dumps(subscriptions).decode())
    return csv_line(cells)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _subscriptions(
    given: Sequence[Mapping[str, Any]], resources: Sequence[str] | None
) -> list[dict[str, Any]]:
    """Each subscription with its contact one-way hashed (the guide: exported only encrypted)."""
    return [
        {
            "resource_id": s["resource_id"],
            "channel": s["channel"],
            "contact_sha256": hashlib.sha256(str(s["contact"]).encode()).hexdigest(),
            "status": s["status"],
            "priority": s["priority"],
        }
        for s in given
        if resources is None or s["resource_id"] in resources
    ]
