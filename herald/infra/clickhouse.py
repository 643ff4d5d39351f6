"""The ClickHouse port for reports, and its two adapters running the same SQL.

- `ChdbClickHouse(path)`: chDB, ClickHouse in-process, data under a directory
  (the embedded default). One process owns a chDB engine bound to one path.
- `ServerClickHouse(host, port, database)`: a ClickHouse server over the
  native protocol (clickhouse-driver); the oldest server we run is Debian's
  18.16, so report SQL keeps to what 18.16 runs (docs in shared/DESIGN.md).

Parameters are written `{name:Type}`, ClickHouse's own placeholder syntax. chDB
binds them itself: the SQL text never holds the value. An 18.16 server has no
server-side parameters, so that adapter hands each value to clickhouse-driver,
which escapes it into a literal; non-numeric, non-string types are wrapped in
`CAST(... AS Type)` so both engines see the declared type. Numbers and strings
stay bare literals because 18.16 wants literals in `LIMIT` and in parametric
aggregates such as `windowFunnel(window)`.

Values come back with the same Python types on both: DateTime → aware UTC
`datetime`, Date → `date`, integers (UInt8 flags included) → `int`, floats →
`float`, String → `str`, Array → `list`, Tuple → `tuple`, NULL → `None`.
Time zones: declare time columns `DateTime('UTC')` so that `toMonday` and the
like bucket in UTC whatever the engine's zone; chDB sessions also run in UTC.

Found on 18.16 and kept portable by rule, not by the adapters:
- rows go in through `insert()`; `execute()` refuses `INSERT ... VALUES/FORMAT`
  with inline data, which an 18.16 server never completes over the native
  protocol (`INSERT ... SELECT` is fine);
- an `-If` aggregate over a Nullable condition is Nullable on 18.16 and NULL
  where nothing matched: write `countIf(ifNull(bounce_class = 'hard', 0))`;
- alias every selected expression: unaliased column names differ by engine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson

from herald.infra.failures import Unavailable

Params = Mapping[str, Any]


class ClickHouse(Protocol):
    """What report code needs from an analytics engine."""

    def execute(self, sql: str, params: Params | None = None) -> None:
        """Run one DDL or DML statement."""
        ...

    def query(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        """Run one SELECT; each row is a dict keyed by (unique) column name."""
        ...

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Insert a batch of rows (tuples in `columns` order) in one INSERT."""
        ...

    def close(self) -> None:
        """Release the connection or session."""
        ...


class ClickHouseError(Exception):
    """The engine refused a statement (syntax, unknown table, bad data...)."""


class ClickHouseUnavailable(ClickHouseError, Unavailable):
    """The server could not be reached or stopped answering: worth retrying, the statement was fine."""


# ---------------------------------------------------------------- types


@dataclass(frozen=True, slots=True)
class ChType:
    """A parsed ClickHouse type: `Array(Nullable(String))` → Array[Nullable[String]]."""

    name: str
    args: tuple[ChType | str, ...] = ()

    @property
    def inner(self) -> ChType:
        arg = self.args[0]
        if not isinstance(arg, ChType):
            raise ValueError(f"{self.name} needs a type argument")
        return arg


_INT_RANGES = {
    f"{sign}Int{bits}": (0, 2**bits - 1) if sign == "U" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    for sign in ("U", "")
    for bits in (8, 16, 32, 64)
}
_FLOATS = frozenset({"Float32", "Float64"})
_STRINGS = frozenset({"String", "FixedString"})
_DATES = frozenset({"Date", "Date32"})
_WRAPPERS = frozenset({"Nullable", "LowCardinality"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPE_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|'(?:[^'\\]|\\.)*'|-?\d+|[(),=])")
_BARE_PARAMETERS = _INT_RANGES.keys() | _FLOATS | _STRINGS


@lru_cache(maxsize=512)
def parse_type(text: str) -> ChType:
    """Parse a ClickHouse type name as `system.columns` or a placeholder spells it."""
    tokens: list[str] = []
    at = 0
    while at < len(text.rstrip()):
        token = _TYPE_TOKEN.match(text, at)
        if token is None:
            raise ValueError(f"not a ClickHouse type: {text!r}")
        tokens.append(token.group(1))
        at = token.end()
    parsed, end = _parse_type_tokens(tokens, 0, text)
    if end != len(tokens):
        raise ValueError(f"not a ClickHouse type: {text!r}")
    return parsed


def _parse_type_tokens(tokens: list[str], at: int, text: str) -> tuple[ChType, int]:
    if at >= len(tokens) or not _IDENTIFIER.fullmatch(tokens[at]):
        raise ValueError(f"not a ClickHouse type: {text!r}")
    name, at = tokens[at], at + 1
    if at >= len(tokens) or tokens[at] != "(":
        return ChType(name), at
    args: list[ChType | str] = []
    at += 1
    while at < len(tokens) and tokens[at] != ")":
        if _IDENTIFIER.fullmatch(tokens[at]):
            arg, at = _parse_type_tokens(tokens, at, text)
            args.append(arg)
        else:
            args.append(tokens[at])  # a literal: DateTime('UTC'), FixedString(8), Enum8('a' = 1)
            at += 1
        if at < len(tokens) and tokens[at] == ",":
            at += 1
    if at >= len(tokens):
        raise ValueError(f"unbalanced parentheses in type {text!r}")
    return ChType(name, tuple(args)), at + 1


def _unwrapped(t: ChType) -> ChType:
    while t.name in _WRAPPERS:
        t = t.inner
    return t


# ------------------------------------------------------- values going in


def canonical_value(t: ChType, value: Any) -> Any:
    """Check a Python value against a column or parameter type and put it in engine-neutral form.

    DateTime becomes epoch seconds (so neither engine's time zone can shift
    it), booleans become 0/1; everything else keeps its Python type.
    Raises TypeError for a wrong Python type, ValueError for a value out of range.
    """
    if t.name == "LowCardinality":
        return canonical_value(t.inner, value)
    if t.name == "Nullable":
        return None if value is None else canonical_value(t.inner, value)
    if value is None:
        raise TypeError(f"None given for non-Nullable type {t.name}")
    if t.name in _INT_RANGES:
        return _canonical_int(t.name, value)
    if t.name in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{t.name} needs a float, got {type(value).__name__}")
        return float(value)
    if t.name in _STRINGS:
        if not isinstance(value, str):
            raise TypeError(f"{t.name} needs a str, got {type(value).__name__}")
        return value
    if t.name in _DATES:
        if isinstance(value, datetime) or not isinstance(value, date):
            raise TypeError(f"{t.name} needs a date, got {type(value).__name__}")
        return value
    if t.name == "DateTime":
        return _epoch_seconds(value)
    if t.name == "Array":
        if not isinstance(value, list | tuple):
            raise TypeError(f"Array needs a list, got {type(value).__name__}")
        return [canonical_value(t.inner, item) for item in value]
    raise TypeError(f"type {t.name} is not supported for values sent to ClickHouse")


def _canonical_int(name: str, value: Any) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{name} needs an int, got {type(value).__name__}")
    low, high = _INT_RANGES[name]
    if not low <= value <= high:
        raise ValueError(f"{value} is out of range for {name}")
    return int(value)  # bool → 0/1: 18.16 has no true/false literals


def _epoch_seconds(value: Any) -> int:
    if not isinstance(value, datetime):
        raise TypeError(f"DateTime needs a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive time would be read in whichever zone the engine runs in.
        raise ValueError(f"DateTime needs a timezone-aware datetime, got naive {value.isoformat()}")
    seconds = math.floor(value.timestamp())
    if not 0 <= seconds <= 2**32 - 1:
        raise ValueError(f"{value.isoformat()} is out of range for DateTime")
    return seconds


# ------------------------------------------------------ values coming out


def _datetime_from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def from_json_value(t: ChType, value: Any) -> Any:
    """Turn one value of chDB's JSONCompact output (DateTime as epoch seconds) into its Python value."""
    if value is None:
        return None
    if t.name in _WRAPPERS:
        return from_json_value(t.inner, value)
    if t.name == "DateTime":
        return _datetime_from_epoch(int(value))
    if t.name in _DATES:
        return date.fromisoformat(value)
    if t.name in _INT_RANGES:
        return int(value)  # 64-bit integers may come quoted
    if t.name in _FLOATS:
        return float(value)  # "nan", "inf" come quoted; 0.0 may come as 0
    if t.name == "Bool":
        return int(value)  # newer engines type some conditions Bool; 18.16 says UInt8
    if t.name == "Array":
        return [from_json_value(t.inner, item) for item in value]
    if t.name == "Tuple":
        return tuple(
            from_json_value(arg, item) if isinstance(arg, ChType) else item
            for arg, item in zip(t.args, value, strict=True)
        )
    return value


def from_driver_value(t: ChType, value: Any, server_zone: ZoneInfo) -> Any:
    """Normalise one value clickhouse-driver returned: naive DateTimes are in the server's zone."""
    if value is None:
        return None
    if t.name in _WRAPPERS:
        return from_driver_value(t.inner, value, server_zone)
    if t.name == "DateTime":
        if value.tzinfo is None:
            value = value.replace(tzinfo=server_zone)
        return value.astimezone(UTC)
    if t.name == "UUID":
        return str(value)  # chDB's JSON gives text
    if t.name == "Array":
        return [from_driver_value(t.inner, item, server_zone) for item in value]
    if t.name == "Tuple":
        return tuple(
            from_driver_value(arg, item, server_zone) if isinstance(arg, ChType) else item
            for arg, item in zip(t.args, value, strict=True)
        )
    return value


# ----------------------------------------------------------- placeholders


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str
    type: ChType
    type_text: str


_PLACEHOLDER = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+?)\s*\}")
# Quoted strings, quoted identifiers and comments: a `{` inside them is text.
_OPAQUE = re.compile(
    r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`|--[^\n]*|/\*.*?\*/",
    re.DOTALL,
)


@lru_cache(maxsize=1024)
def split_placeholders(sql: str) -> tuple[str | Placeholder, ...]:
    """Split SQL into literal text and `{name:Type}` placeholders, skipping strings and comments."""
    parts: list[str | Placeholder] = []
    text_start = at = 0
    while at < len(sql):
        opaque = _OPAQUE.match(sql, at)
        if opaque:
            at = opaque.end()
            continue
        found = _PLACEHOLDER.match(sql, at) if sql[at] == "{" else None
        if found:
            parts.append(sql[text_start:at])
            type_text = found.group(2)
            parts.append(Placeholder(found.group(1), parse_type(type_text), type_text))
            text_start = at = found.end()
            continue
        at += 1
    parts.append(sql[text_start:])
    return tuple(part for part in parts if part != "")


def bind_values(parts: Sequence[str | Placeholder], params: Params | None) -> dict[str, Any]:
    """Check that params match the placeholders exactly and put each value in canonical form."""
    given = dict(params or {})
    bound: dict[str, Any] = {}
    declared: dict[str, ChType] = {}
    for part in parts:
        if not isinstance(part, Placeholder):
            continue
        if declared.setdefault(part.name, part.type) != part.type:
            raise ValueError(f"parameter {part.name!r} is declared with two different types")
        if part.name not in given:
            raise KeyError(f"no value given for parameter {part.name!r}")
        bound[part.name] = canonical_value(part.type, given[part.name])
    unused = sorted(set(given) - set(declared))
    if unused:
        raise KeyError(f"parameters not used by the query: {', '.join(unused)}")
    return bound


# chDB reads a parameter's text in ClickHouse's "escaped" format (as in TSV);
# the elements of an array inside it are quoted literals.
_ESCAPED = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
_QUOTED = str.maketrans({"\\": "\\\\", "'": "\\'", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def escaped_text(t: ChType, value: Any) -> str:
    """A canonical value as chDB's parameter text for type `t`."""
    if value is None:
        return "\\N"
    t = _unwrapped(t)
    if t.name in _STRINGS:
        return str(value).translate(_ESCAPED)
    if t.name == "Array":
        return "[" + ",".join(_quoted_text(t.inner, item) for item in value) + "]"
    return _plain_text(value)


def _quoted_text(t: ChType, value: Any) -> str:
    if value is None:
        return "NULL"
    t = _unwrapped(t)
    if t.name == "Array":
        return "[" + ",".join(_quoted_text(t.inner, item) for item in value) + "]"
    if t.name in _STRINGS:
        return "'" + str(value).translate(_QUOTED) + "'"
    if t.name in _DATES or t.name == "DateTime":
        return "'" + _plain_text(value) + "'"
    return _plain_text(value)


def _plain_text(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, date):
        return value.isoformat()
    return repr(value) if isinstance(value, float) else str(value)


def _driver_sql(parts: Sequence[str | Placeholder]) -> str:
    """SQL for clickhouse-driver's client-side `%(name)s` substitution."""
    pieces: list[str] = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(part.replace("%", "%%"))  # the driver applies Python's % operator
        elif _unwrapped(part.type).name in _BARE_PARAMETERS:
            pieces.append(f"%({part.name})s")
        else:
            pieces.append(f"CAST(%({part.name})s AS {part.type_text})")
    return "".join(pieces)


_INLINE_INSERT = re.compile(r"^\s*INSERT\b.*\b(VALUES|FORMAT)\b", re.IGNORECASE | re.DOTALL)


def refuse_inline_insert(parts: Sequence[str | Placeholder]) -> None:
    """Refuse `INSERT ... VALUES (...)`: an 18.16 server waits for data blocks that never come."""
    code = " ".join(part for part in parts if isinstance(part, str))
    if _INLINE_INSERT.match(_OPAQUE.sub(" ", code)):  # strings and comments may say VALUES
        raise ValueError("INSERT with inline VALUES/FORMAT data: use insert() (or INSERT ... SELECT)")


def _identifier(name: str) -> str:
    """Quote a table or column name (optionally `database.table`); refuse anything else."""
    pieces = name.split(".")
    if not 1 <= len(pieces) <= 2 or not all(_IDENTIFIER.fullmatch(piece) for piece in pieces):
        raise ValueError(f"not a plain identifier: {name!r}")
    return ".".join(f"`{piece}`" for piece in pieces)


def _rows_as_dicts(names: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    if len(set(names)) != len(names):
        raise ValueError(f"query returns duplicate column names {list(names)}: alias them")
    return [dict(zip(names, row, strict=True)) for row in rows]


# ------------------------------------------------------------- inserting


class _ColumnTypes:
    """Column types per table, read from `system.columns` and kept until the next DDL."""

    def __init__(self, query: Callable[[str, Params], list[dict[str, Any]]]) -> None:
        self._query = query
        self._cache: dict[str, dict[str, str]] = {}

    def clear(self) -> None:
        self._cache.clear()

    def for_columns(self, table: str, columns: Sequence[str]) -> list[ChType]:
        types = self._cache.get(table)
        if types is None:
            types = self._cache[table] = self._load(table)
        missing = [column for column in columns if column not in types]
        if missing:
            raise ClickHouseError(f"table {table} has no column {', '.join(missing)} (or does not exist)")
        return [parse_type(types[column]) for column in columns]

    def _load(self, table: str) -> dict[str, str]:
        database, _, name = table.rpartition(".")
        rows = self._query(
            "SELECT name, type FROM system.columns"
            " WHERE database = if({db:String} = '', currentDatabase(), {db:String}) AND table = {t:String}",
            {"db": database, "t": name},
        )
        return {row["name"]: row["type"] for row in rows}


def _canonical_rows(
    types: Sequence[ChType], columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> list[list[Any]]:
    out: list[list[Any]] = []
    for number, row in enumerate(rows):
        if len(row) != len(types):
            raise ValueError(f"row {number} has {len(row)} values for {len(types)} columns")
        try:
            out.append([canonical_value(t, value) for t, value in zip(types, row, strict=True)])
        except (TypeError, ValueError) as error:
            raise type(error)(f"row {number}: {error} (columns {list(columns)})") from error
    return out


def _json_ready(value: Any) -> Any:
    """A canonical value as JSONCompactEachRow input: dates as text, non-finite floats quoted."""
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return _plain_text(value)
    return value


# ------------------------------------------------------------------ chDB

# Settings every chDB session runs with: UTC like a server configured for it,
# DateTime as epoch seconds and non-finite floats as text in JSON output, so
# results convert to Python without guessing a zone.
_CHDB_SETTINGS = (
    "SET session_timezone = 'UTC'",
    "SET date_time_output_format = 'unix_timestamp'",
    "SET output_format_json_quote_denormals = 1",
    # One INSERT of fewer rows than the block size is one block, hence one part, visible whole or not
    # at all (the report sink's rollup relies on it): parallel parsing would cut it at 10 MB of input.
    "SET input_format_parallel_parsing = 0",
)


class ChdbClickHouse:
    """The embedded adapter: a chDB session on a data directory.

    chDB allows one engine per process, bound to one path: opening a second
    path while a session is open raises, and a second process cannot open the
    same path. Sessions on the same path may coexist.
    """

    def __init__(self, path: Path | str, database: str = "herald") -> None:
        # Deferred: loading the engine costs about half a second.
        import chdb
        from chdb.session import Session

        # chDB raises its own ChdbError (two classes of that name) or RuntimeError.
        self._errors: tuple[type[BaseException], ...] = (chdb.ChdbError, RuntimeError)
        Path(path).mkdir(parents=True, exist_ok=True)
        open_session: Any = Session  # chDB's functions carry no annotations
        try:
            self._session: Any = open_session(str(path))
        except self._errors as error:
            raise ClickHouseError(str(error)) from error
        self._types = _ColumnTypes(self.query)
        for setting in _CHDB_SETTINGS:
            self._run(setting, None)
        self._run(f"CREATE DATABASE IF NOT EXISTS {_identifier(database)}", None)
        self._run(f"USE {_identifier(database)}", None)

    def execute(self, sql: str, params: Params | None = None) -> None:
        refuse_inline_insert(split_placeholders(sql))
        self._types.clear()  # DDL may have changed a table's columns
        self._run(sql, params)

    def query(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        raw = self._run(sql, params, fmt="JSONCompact")
        if not raw:
            return []
        result = orjson.loads(raw)
        names = [column["name"] for column in result["meta"]]
        types = [parse_type(column["type"]) for column in result["meta"]]
        rows = (
            [from_json_value(t, value) for t, value in zip(types, row, strict=True)] for row in result["data"]
        )
        return _rows_as_dicts(names, rows)

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        statement = f"INSERT INTO {_identifier(table)} ({', '.join(_identifier(c) for c in columns)})"
        data = _canonical_rows(self._types.for_columns(table, columns), columns, rows)
        if not data:
            return
        # The rows travel as JSON in the input format, never through the SQL parser.
        payload = b"".join(orjson.dumps(_json_ready(row)) + b"\n" for row in data)
        try:
            with self._session.send_insert(statement, "JSONCompactEachRow") as inserter:
                inserter.append(payload)
                inserter.finish()
        except self._errors as error:
            raise ClickHouseError(str(error)) from error

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _run(self, sql: str, params: Params | None, fmt: str = "CSV") -> bytes:
        parts = split_placeholders(sql)
        values = bind_values(parts, params)
        texts = {
            part.name: escaped_text(part.type, values[part.name])
            for part in parts
            if isinstance(part, Placeholder)
        }
        try:
            result = self._session.query(sql, fmt, params=texts)
        except self._errors as error:
            raise ClickHouseError(str(error)) from error
        return bytes(result.bytes()) if result is not None else b""


# ---------------------------------------------------------------- server


# A server parses at most `max_query_size` bytes of a query's text (256 KiB by default), and this
# adapter's values travel inside that text: a segment of 10,000 ids is past it. Such a query asks for
# room for itself (a per-query setting, which 18.16 honours); smaller ones send no setting at all.
_DEFAULT_MAX_QUERY_SIZE = 262_144


def _literal_size(value: Any) -> int:
    """An upper bound on the bytes a canonical value takes as a quoted, escaped SQL literal."""
    if isinstance(value, list | tuple):
        return 2 + sum(_literal_size(item) + 1 for item in value)
    if isinstance(value, str):
        return 2 + 2 * len(value.encode())  # every byte escaped at worst, plus the quotes
    return 32  # numbers, dates, epoch seconds


def _query_size_settings(size: int) -> dict[str, int]:
    """The per-query settings a query text of about `size` bytes needs."""
    if size < _DEFAULT_MAX_QUERY_SIZE // 2:
        return {}
    return {"max_query_size": 2 * size + _DEFAULT_MAX_QUERY_SIZE}


class ServerClickHouse:
    """The scale-out adapter: a ClickHouse server over the native protocol (clickhouse-driver)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        database: str = "herald",
        *,
        user: str = "default",
        password: str = "",
        create_database: bool = True,
        connect_timeout: float = 10.0,
    ) -> None:
        # Deferred: only the scale-out setup needs the driver.
        from clickhouse_driver import Client  # type: ignore[import-untyped]
        from clickhouse_driver.errors import Error, NetworkError, SocketTimeoutError  # type: ignore[import-untyped]

        self._errors: tuple[type[BaseException], ...] = (Error, OSError, EOFError)
        self._unreachable: tuple[type[BaseException], ...] = (
            NetworkError,
            SocketTimeoutError,
            OSError,
            EOFError,
        )

        def client(db: str) -> Any:
            return Client(
                host, port=port, database=db, user=user, password=password, connect_timeout=connect_timeout
            )

        if create_database:
            # A client can only be bound to a database that exists.
            bootstrap = client("default")
            try:
                self._call(bootstrap.execute, f"CREATE DATABASE IF NOT EXISTS {_identifier(database)}")
            finally:
                bootstrap.disconnect()
        self._client = client(database)
        # Naive DateTimes from the driver are in the server's zone.
        self._zone = ZoneInfo(self._call(self._client.execute, "SELECT timezone()")[0][0])
        self._types = _ColumnTypes(self.query)

    def execute(self, sql: str, params: Params | None = None) -> None:
        refuse_inline_insert(split_placeholders(sql))
        self._types.clear()  # DDL may have changed a table's columns
        self._run(sql, params, with_column_types=False)

    def query(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        rows, columns = self._run(sql, params, with_column_types=True)
        names = [name for name, _ in columns]
        types = [parse_type(type_text) for _, type_text in columns]
        converted = (
            [from_driver_value(t, value, self._zone) for t, value in zip(types, row, strict=True)]
            for row in rows
        )
        return _rows_as_dicts(names, converted)

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        statement = f"INSERT INTO {_identifier(table)} ({', '.join(_identifier(c) for c in columns)}) VALUES"
        data = _canonical_rows(self._types.for_columns(table, columns), columns, rows)
        if not data:
            return
        # DateTimes are epoch seconds by now; the driver writes ints as they are.
        self._call(self._client.execute, statement, data, types_check=True)

    def close(self) -> None:
        self._client.disconnect()

    def _run(self, sql: str, params: Params | None, *, with_column_types: bool) -> Any:
        parts = split_placeholders(sql)
        values = bind_values(parts, params)
        if not any(isinstance(part, Placeholder) for part in parts):
            return self._call(self._client.execute, sql, with_column_types=with_column_types)
        sql_text = _driver_sql(parts)
        return self._call(
            self._client.execute,
            sql_text,
            values,
            with_column_types=with_column_types,
            settings=_query_size_settings(len(sql_text) + sum(_literal_size(v) for v in values.values())),
        )

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except self._unreachable as error:
            raise ClickHouseUnavailable(str(error)) from error
        except self._errors as error:
            raise ClickHouseError(str(error)) from error
