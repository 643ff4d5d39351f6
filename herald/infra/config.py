"""Configuration from the environment (the one place that reads it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from pydantic import ValidationError

from herald.domain.bots import DEFAULT_BOT_RULES, BotRules

ENGINES = ("embedded", "scale")
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
REPORTS_ENGINES = ("chdb", "server", "off")
# The scale engine's readers attach every partition's store; SQLite attaches at most 10 (as compiled).
MAX_PARTITIONS = 10


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    # Secrets are kept out of the repr, so logging or printing the settings shows none of them.
    admin_token: str | None = field(default=None, repr=False)
    # Signs tracking tokens; generated into the data directory on first start when unset.
    secret_key: str | None = field(default=None, repr=False)
    # Seals secrets stored in the log (`infra/secret_box.py`): base64url keys, comma-separated, the
    # first current; unset, the data directory's `secrets-key` file (made on first start) holds them.
    secrets_key: str | None = field(default=None, repr=False)
    account_timezone: str = "UTC"
    # Dynamic template content: non-public networks it may reach (none by default), its limits.
    remote_allowed_networks: tuple[str, ...] = ()
    remote_timeout_seconds: float = 5.0
    remote_max_bytes: int = 1024 * 1024
    # `embedded`: this process runs every processor; `scale`: `herald relay` and `herald worker` do.
    engine: str = "embedded"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic: str = "herald.events"
    kafka_partitions: int = 6
    # Reports: `chdb` (embedded, data under data_dir/clickhouse), `server` (ClickHouse over the native
    # protocol), or `off` (no report store; the report API answers 503).
    reports_engine: str = "chdb"
    clickhouse_path: Path | None = None
    clickhouse_database: str = "herald"
    clickhouse_host: str = "127.0.0.1"
    clickhouse_port: int = 9000
    # The inbound SMTP listener for bounces and complaints (off unless a port is given).
    inbound_smtp_port: int | None = None
    # The read pixel records a read once the client kept its request open this long.
    read_pixel_seconds: float = 10.0
    # The account's id, as external promo-code services are told it (`account_id`).
    account_id: str = "1"
    # The largest JSON request body taken (413 above it); file uploads have limits of their own.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Which tracker hits are machines' (`domain/bots.py`): HERALD_BOT_RULES, a JSON object.
    bot_rules: BotRules = DEFAULT_BOT_RULES
    # Web push subscriptions with an http (not https) endpoint: only for local push services in tests.
    allow_http_push_endpoints: bool = False
    # File imports: the largest file taken (uploaded or fetched by a scheduled import).
    import_max_bytes: int = 4 * 1024**3
    # A scheduled import's fetch of its URL, whole (DNS, connect, body), under the remote policy.
    import_fetch_timeout_seconds: float = 600.0
    # The audit log keeps its entries this long (the guide's AUDIT_LOG_TTL); the log keeps everything.
    audit_retention_days: int = 90
    # Report rows older than this many days are deleted (None: reports keep everything).
    report_retention_days: int | None = None

    @property
    def event_store_path(self) -> Path:
        return self.data_dir / "events.sqlite"

    @property
    def readmodel_path(self) -> Path:
        return self.data_dir / "readmodels.sqlite"

    @property
    def partitions_path(self) -> Path:
        """The scale engine's read models: one store per partition of the event topic."""
        return self.data_dir / "partitions"


def settings_from_env(**overrides: object) -> Settings:
    """Settings from `HERALD_*` variables; explicit overrides (CLI flags) win."""
    values: dict[str, object] = {
        "data_dir": Path(os.environ.get("HERALD_DATA_DIR", "herald-data")),
        "host": os.environ.get("HERALD_HOST", "127.0.0.1"),
        "port": int(os.environ.get("HERALD_PORT", "8080")),
        "admin_token": os.environ.get("HERALD_ADMIN_TOKEN"),
        "secret_key": os.environ.get("HERALD_SECRET_KEY"),
        "secrets_key": os.environ.get("HERALD_SECRETS_KEY"),
        "account_timezone": os.environ.get("HERALD_ACCOUNT_TIMEZONE", "UTC"),
        "remote_allowed_networks": tuple(
            n.strip() for n in os.environ.get("HERALD_REMOTE_ALLOWED_NETWORKS", "").split(",") if n.strip()
        ),
        "remote_timeout_seconds": float(os.environ.get("HERALD_REMOTE_TIMEOUT_SECONDS", "5")),
        "remote_max_bytes": int(os.environ.get("HERALD_REMOTE_MAX_BYTES", str(1024 * 1024))),
        "read_pixel_seconds": float(os.environ.get("HERALD_READ_PIXEL_SECONDS", "10")),
        "account_id": os.environ.get("HERALD_ACCOUNT_ID", "1"),
        "import_max_bytes": int(os.environ.get("HERALD_IMPORT_MAX_BYTES", str(4 * 1024**3))),
        "import_fetch_timeout_seconds": float(os.environ.get("HERALD_IMPORT_FETCH_TIMEOUT_SECONDS", "600")),
        "audit_retention_days": int(os.environ.get("HERALD_AUDIT_RETENTION_DAYS", "90")),
        "report_retention_days": _optional_int(os.environ.get("HERALD_REPORT_RETENTION_DAYS")),
        "max_body_bytes": int(os.environ.get("HERALD_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES))),
        "bot_rules": bot_rules(os.environ.get("HERALD_BOT_RULES", "")),
        "engine": os.environ.get("HERALD_ENGINE", "embedded"),
        "kafka_bootstrap": os.environ.get("HERALD_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        "kafka_topic": os.environ.get("HERALD_KAFKA_TOPIC", "herald.events"),
        "kafka_partitions": int(os.environ.get("HERALD_KAFKA_PARTITIONS", "6")),
        "inbound_smtp_port": _optional_int(os.environ.get("HERALD_INBOUND_SMTP_PORT")),
        "reports_engine": os.environ.get("HERALD_REPORTS_ENGINE", "chdb"),
        "clickhouse_path": os.environ.get("HERALD_CLICKHOUSE_PATH") or None,
        "clickhouse_database": os.environ.get("HERALD_CLICKHOUSE_DATABASE", "herald"),
        "clickhouse_host": os.environ.get("HERALD_CLICKHOUSE_HOST", "127.0.0.1"),
        "clickhouse_port": int(os.environ.get("HERALD_CLICKHOUSE_PORT", "9000")),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["data_dir"] = Path(str(values["data_dir"]))
    if values["clickhouse_path"] is not None:
        values["clickhouse_path"] = Path(str(values["clickhouse_path"]))
    if values["reports_engine"] not in REPORTS_ENGINES:
        raise ValueError(f"HERALD_REPORTS_ENGINE is one of {', '.join(REPORTS_ENGINES)}")
    if values["engine"] not in ENGINES:
        raise ValueError(f"HERALD_ENGINE is one of {', '.join(ENGINES)}, not {values['engine']!r}")
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.engine == "scale":
        check_scale(settings)
    return settings


def check_scale(settings: Settings) -> None:
    """What the scale engine needs of the settings (ValueError naming the variable otherwise)."""
    if settings.reports_engine == "chdb":
        raise ValueError(
            "HERALD_REPORTS_ENGINE=chdb keeps the report store inside one process, and the scale engine's "
            "workers write reports from several: use server (a ClickHouse server) or off"
        )
    if not 1 <= settings.kafka_partitions <= MAX_PARTITIONS:
        raise ValueError(
            f"HERALD_KAFKA_PARTITIONS is 1 to {MAX_PARTITIONS} (each partition is a read-model file and "
            f"a reader attaches at most {MAX_PARTITIONS}), not {settings.kafka_partitions}"
        )


def bot_rules(text: str) -> BotRules:
    """`HERALD_BOT_RULES`: a JSON object of `BotRules` fields (the others keep their defaults)."""
    if not text.strip():
        return DEFAULT_BOT_RULES
    try:
        return BotRules.model_validate(orjson.loads(text))
    except orjson.JSONDecodeError as error:
        raise ValueError(f"HERALD_BOT_RULES is not JSON: {error}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(the whole value)"
        raise ValueError(f"HERALD_BOT_RULES.{where}: {first['msg']}") from None


def _optional_int(value: str | None) -> int | None:
    return int(value) if value else None
