"""Profile fields: their types, definitions, the standard fields, and value coercion.

A profile database defines which fields its profiles hold: the standard fields
every database has (guide "Стандартные поля") and any number of custom fields
("Дополнительные поля"). Every incoming value is coerced to one stored JSON
form, so equal values compare equal and segments, templates and reports read
one shape.

Stored forms:
- `int` ("Число"): a whole number in the signed 64-bit range; `12.0` and `"12"`
  are accepted, a fraction or a bool is refused (the guide: money is stored in
  cents, there are no fractional Число fields; `float` exists for the rest).
- `float`: a finite number. `string`: trimmed text of at most 65,536 characters; numbers
  are turned into text.
- `date`: `YYYY-MM-DD`. An ISO datetime keeps its calendar date as written
  (the guide's `2019-08-22T00:00:00.000Z` is 2019-08-22); `DD.MM.YYYY` is
  accepted because Russian spreadsheets write dates that way.
- `datetime`: ISO UTC with milliseconds, `2020-04-19T23:34:57.398Z`; a value
  without an offset is taken as UTC, a bare date as its midnight UTC.
- `bool`: true/false; also `1/0`, `yes/no`, `да/нет` (the guide's default "Да").
- `list` ("Список"): one of the field's options, matched case-insensitively and
  stored in the option's own spelling.
- `ip`: an IPv4 address (the guide: IPv4 only).
- `tags` ("Теги"): a sorted list of distinct tags; text is split on `,` `|` `;`,
  so a tag in a list may not contain them.
- `json`: any JSON object or array (text is parsed), nested at most 32 deep.
- standard-only kinds: `email` (normalised address), `phones` (E.164 list in
  the given order, duplicates dropped; text is split on `,` `;`), `timezone`
  (an IANA name such as `Europe/Moscow`).

An empty value (None, blank text, an empty list or object) coerces to None,
which clears the field.

Standard fields and their canonical API names (the guide's template variables
`{lead._fname}` …); aliases, case-insensitive, are the names the guide's
mappings use (`FirstName`, `LastIP`, …):

| canonical | type | aliases |
|---|---|---|
| `email` | email | Email |
| `phones` | phones | Phones, phone |
| `_fname` | string | FirstName, first_name |
| `_lname` | string | LastName, last_name |
| `_bdate` | date | Birthday, birth_date, BirthDate |
| `_sex` | list (male, female) | Sex, Gender |
| `_regdate` | datetime | RegDate, registration_date |
| `_regip` | ip | RegIP, reg_ip |
| `_regcity` | string | RegCity |
| `_regcountry` | string | RegCountry |
| `_regurl` | string | RegURL |
| `_vendor` | string | Vendor |
| `_ip` | ip | IP, LastIP |
| `_city` | string | City, LastCity |
| `_country` | string | Country, LastCountry |
| `_region` | string | Region, LastRegion |
| `_postal_code` | string | PostalCode, Postcode |
| `_tz` | timezone | Timezone, tz |

Decisions where the guide is silent: `_regdate` is a datetime, because the
opt-in proof the database's consent statement promises is "ip, date, time";
`_sex` offers `male`/`female` (unset is "Не выбрано"); `_tz` is the profile's
time zone and its last tracked one alike; only int, string, date and ip
custom fields can be unique (a unique value must name one profile, which a
bool, a tag set or a JSON document cannot sensibly do).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, JsonValue

from herald.domain.contacts import normalize_email, normalize_phone
from herald.domain.errors import ValidationFailed


class FieldType(StrEnum):
    INT = "int"
    FLOAT = "float"
    STRING = "string"
    DATE = "date"
    DATETIME = "datetime"
    BOOL = "bool"
    LIST = "list"
    IP = "ip"
    TAGS = "tags"
    JSON = "json"
    EMAIL = "email"
    PHONES = "phones"
    TIMEZONE = "timezone"


CUSTOM_FIELD_TYPES = frozenset(
    {
        FieldType.INT,
        FieldType.FLOAT,
        FieldType.STRING,
        FieldType.DATE,
        FieldType.BOOL,
        FieldType.LIST,
        FieldType.IP,
        FieldType.TAGS,
        FieldType.JSON,
    }
)
"""The types a user may give a custom field: the guide's seven plus `float` and `json`."""

UNIQUE_FIELD_TYPES = frozenset({FieldType.INT, FieldType.STRING, FieldType.DATE, FieldType.IP})
"""The custom field types whose values can identify one profile (a CRM id, an account number…)."""

_API_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
TAG_SEPARATORS = re.compile(r"[,|;]")
_PHONE_SEPARATORS = re.compile(r"[,;]")
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
# A text value (a string field, one tag): far above names, addresses and notes, low enough that
# one profile cannot weigh megabytes in every read model and report row that copies it.
MAX_TEXT_CHARS = 65_536
# A json field's value nests at most this deep: what the API takes for whole bodies, so a value
# written as text cannot nest deeper than one written as JSON (and break reading the log back).
MAX_JSON_DEPTH = 32
_TRUE = frozenset({"true", "1", "yes", "y", "on", "да"})
_FALSE = frozenset({"false", "0", "no", "n", "off", "нет"})
_DOTTED_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")


class FieldDefinition(BaseModel):
    """A profile field as a database defines it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    title: str = ""
    type: FieldType
    options: tuple[str, ...] = ()
    default: JsonValue = None
    required: bool = False
    unique: bool = False
    in_subscription_manager: bool = False

    @property
    def label(self) -> str:
        """The name a user sees: the title, or the API name when there is none."""
        return self.title or self.name


def is_valid_api_name(name: str) -> bool:
    """Latin letters, digits and `_`, starting with a letter or `_`, at most 64 characters."""
    return _API_NAME.match(name) is not None


def is_empty(value: object) -> bool:
    """No data: None, blank text, an empty list or object. Such a value clears a field."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict | set | frozenset):
        return not value
    return False


def coerce_value(field: FieldDefinition, value: object, path: str) -> JsonValue:
    """`value` in the stored JSON form of `field`'s type, or None when empty; refuses bad values."""
    if is_empty(value):
        return None
    return _COERCERS[field.type](field, value, path)


def _refuse(value: object, what: str, path: str) -> ValidationFailed:
    return ValidationFailed(f"{value!r} is not {what}", path)


def _coerce_int(_: FieldDefinition, value: object, path: str) -> JsonValue:
    number: int
    if isinstance(value, bool):
        raise _refuse(value, "a whole number", path)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float | str):
        number = _whole(value, path)
    else:
        raise _refuse(value, "a whole number", path)
    if not _INT_MIN <= number <= _INT_MAX:
        raise ValidationFailed(f"{number} is outside the range of a number field (64-bit)", path)
    return number


def _whole(value: float | str, path: str) -> int:
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            raise _refuse(value, "a whole number", path) from None
    if not math.isfinite(value) or not value.is_integer():
        raise ValidationFailed(
            f"{value!r} is not a whole number; number fields hold integers (store money in cents)", path
        )
    return int(value)


def _coerce_float(_: FieldDefinition, value: object, path: str) -> JsonValue:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _refuse(value, "a number", path)
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise _refuse(value, "a number", path) from None
    if not math.isfinite(number):
        raise _refuse(value, "a finite number", path)
    return number


def _coerce_string(_: FieldDefinition, value: object, path: str) -> JsonValue:
    if isinstance(value, str):
        return _text(value.strip(), path)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _refuse(value, "text", path)


def _text(text: str, path: str) -> str:
    if len(text) > MAX_TEXT_CHARS:
        raise ValidationFailed(
            f"the text is {len(text):,} characters; a field holds at most {MAX_TEXT_CHARS:,}", path
        )
    return text


def _coerce_date(_: FieldDefinition, value: object, path: str) -> JsonValue:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        dotted = _DOTTED_DATE.match(text)
        try:
            if dotted:
                day, month, year = (int(part) for part in dotted.groups())
                return date(year, month, day).isoformat()
            if len(text) == 10:
                return date.fromisoformat(text).isoformat()
            return datetime.fromisoformat(text).date().isoformat()
        except ValueError:
            pass
    raise _refuse(value, "a date (YYYY-MM-DD)", path)


def parse_datetime(value: object, path: str) -> datetime:
    """An aware UTC datetime from a datetime, a date or ISO text; no offset means UTC."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        raise _refuse(value, "a date and time (ISO 8601, e.g. 2020-04-19T23:34:57Z)", path)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_datetime(moment: datetime) -> str:
    """The stored form of a datetime: ISO UTC with milliseconds and `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _coerce_datetime(_: FieldDefinition, value: object, path: str) -> JsonValue:
    return format_datetime(parse_datetime(value, path))


def _coerce_bool(_: FieldDefinition, value: object, path: str) -> JsonValue:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _refuse(value, "true or false", path)


def _coerce_list(field: FieldDefinition, value: object, path: str) -> JsonValue:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _refuse(value, f"one of {', '.join(field.options)}", path)
    text = str(value).strip()
    if text in field.options:
        return text
    for option in field.options:
        if option.casefold() == text.casefold():
            return option
    raise ValidationFailed(f"{text!r} is not one of the options: {', '.join(field.options)}", path)


def _coerce_ip(_: FieldDefinition, value: object, path: str) -> JsonValue:
    if isinstance(value, str):
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            raise _refuse(value, "an IP address (IPv4, e.g. 127.0.0.1)", path) from None
        if address.version == 6:
            raise ValidationFailed(f"{value!r} is IPv6; IP fields hold IPv4 addresses only", path)
        return str(address)
    raise _refuse(value, "an IP address (IPv4, e.g. 127.0.0.1)", path)


def _items(value: object, separators: re.Pattern[str], what: str, path: str) -> list[tuple[str, str]]:
    """(item path, item text) pairs from text split on `separators` or from a list of scalars."""
    if isinstance(value, str):
        return [(f"{path}.{i}", part) for i, part in enumerate(separators.split(value))]
    if not isinstance(value, list | tuple | set | frozenset):
        raise _refuse(value, what, path)
    items: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise _refuse(item, "text", f"{path}.{i}")
        items.append((f"{path}.{i}", str(item)))
    return items


def _coerce_tags(_: FieldDefinition, value: object, path: str) -> JsonValue:
    tags: set[str] = set()
    from_list = not isinstance(value, str)
    for item_path, item in _items(value, TAG_SEPARATORS, "tags (text or a list)", path):
        if from_list and TAG_SEPARATORS.search(item):
            raise ValidationFailed(f"a tag cannot contain ',', '|' or ';': {item!r}", item_path)
        if item.strip():
            tags.add(_text(item.strip(), item_path))
    stored: list[JsonValue] = [*sorted(tags)]
    return stored or None


def _coerce_phones(_: FieldDefinition, value: object, path: str) -> JsonValue:
    phones: list[JsonValue] = []
    for item_path, item in _items(value, _PHONE_SEPARATORS, "a list of phones", path):
        if item.strip():
            phone = normalize_phone(item, item_path)
            if phone not in phones:
                phones.append(phone)
    return phones or None


def _coerce_email(_: FieldDefinition, value: object, path: str) -> JsonValue:
    if not isinstance(value, str):
        raise _refuse(value, "an email address", path)
    return normalize_email(value, path)


def _coerce_timezone(_: FieldDefinition, value: object, path: str) -> JsonValue:
    if isinstance(value, str):
        name = value.strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
        else:
            return name
    raise _refuse(value, "a time zone (an IANA name such as Europe/Moscow)", path)


def _coerce_json(_: FieldDefinition, value: object, path: str) -> JsonValue:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise _refuse(value, "JSON", path) from None
    if not isinstance(value, dict | list | tuple):
        raise _refuse(value, "a JSON object or array", path)
    return _json(value, path, 1)


def _json(value: object, path: str, depth: int) -> JsonValue:
    if isinstance(value, int) and not isinstance(value, bool) and not _INT_MIN <= value <= _INT_MAX:
        raise ValidationFailed(f"{value} is outside the range of a whole number (64-bit)", path)
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _refuse(value, "a finite number", path)
        return value
    if depth > MAX_JSON_DEPTH:
        raise ValidationFailed(f"a JSON value nests at most {MAX_JSON_DEPTH} levels deep", path)
    if isinstance(value, list | tuple):
        return [_json(item, f"{path}.{i}", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        result: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _refuse(key, "a JSON object key (text)", path)
            result[key] = _json(item, f"{path}.{key}", depth + 1)
        return result
    raise _refuse(value, "a JSON value", path)


_COERCERS: Mapping[FieldType, Callable[[FieldDefinition, object, str], JsonValue]] = {
    FieldType.INT: _coerce_int,
    FieldType.FLOAT: _coerce_float,
    FieldType.STRING: _coerce_string,
    FieldType.DATE: _coerce_date,
    FieldType.DATETIME: _coerce_datetime,
    FieldType.BOOL: _coerce_bool,
    FieldType.LIST: _coerce_list,
    FieldType.IP: _coerce_ip,
    FieldType.TAGS: _coerce_tags,
    FieldType.JSON: _coerce_json,
    FieldType.EMAIL: _coerce_email,
    FieldType.PHONES: _coerce_phones,
    FieldType.TIMEZONE: _coerce_timezone,
}


def check_definition(field: FieldDefinition, path: str = "field") -> FieldDefinition:
    """A custom field definition checked, with its default in stored form; refuses a bad one."""
    if not is_valid_api_name(field.name):
        raise ValidationFailed(
            "a field name is latin letters, digits and '_', starts with a letter or '_', "
            "and is at most 64 characters",
            f"{path}.name",
        )
    if field.type not in CUSTOM_FIELD_TYPES:
        allowed = ", ".join(sorted(CUSTOM_FIELD_TYPES))
        raise ValidationFailed(f"a custom field's type is one of {allowed}", f"{path}.type")
    if field.unique and field.type not in UNIQUE_FIELD_TYPES:
        allowed = ", ".join(sorted(UNIQUE_FIELD_TYPES))
        raise ValidationFailed(f"only {allowed} fields can be unique", f"{path}.unique")
    return check_options_and_default(field, path)


def check_options_and_default(field: FieldDefinition, path: str) -> FieldDefinition:
    """`field` with clean options and its default in stored form; refuses bad ones."""
    options = tuple(option.strip() for option in field.options)
    if field.type is FieldType.LIST:
        if not options or any(not option for option in options):
            raise ValidationFailed("a list field needs its options, none of them blank", f"{path}.options")
        if len({option.casefold() for option in options}) != len(options):
            raise ValidationFailed("a list field's options must differ", f"{path}.options")
    elif options:
        raise ValidationFailed(f"only list fields have options, not {field.type} fields", f"{path}.options")
    field = field.model_copy(update={"options": options})
    default = coerce_value(field, field.default, f"{path}.default")
    if default is not None and (field.unique or field.type in (FieldType.EMAIL, FieldType.PHONES)):
        raise ValidationFailed(
            "a field that identifies profiles cannot have a default (every profile would share it)",
            f"{path}.default",
        )
    return field.model_copy(update={"default": default})


def _standard(
    name: str, title: str, type_: FieldType, *aliases: str, options: tuple[str, ...] = (), **flags: bool
) -> tuple[FieldDefinition, tuple[str, ...]]:
    return FieldDefinition(name=name, title=title, type=type_, options=options, **flags), aliases


_STANDARD = (
    _standard("email", "Email", FieldType.EMAIL, "Email", unique=True, in_subscription_manager=True),
    _standard("phones", "Phones", FieldType.PHONES, "Phones", "phone", in_subscription_manager=True),
    _standard("_fname", "First name", FieldType.STRING, "FirstName", "first_name"),
    _standard("_lname", "Last name", FieldType.STRING, "LastName", "last_name"),
    _standard("_bdate", "Birthday", FieldType.DATE, "Birthday", "birth_date", "BirthDate"),
    _standard("_sex", "Gender", FieldType.LIST, "Sex", "Gender", options=("male", "female")),
    _standard("_regdate", "Registration date", FieldType.DATETIME, "RegDate", "registration_date"),
    _standard("_regip", "Registration IP", FieldType.IP, "RegIP", "reg_ip"),
    _standard("_regcity", "Registration city", FieldType.STRING, "RegCity"),
    _standard("_regcountry", "Registration country", FieldType.STRING, "RegCountry"),
    _standard("_regurl", "Registration URL", FieldType.STRING, "RegURL"),
    _standard("_vendor", "Vendor", FieldType.STRING, "Vendor"),
    _standard("_ip", "IP address", FieldType.IP, "IP", "LastIP"),
    _standard("_city", "City", FieldType.STRING, "City", "LastCity"),
    _standard("_country", "Country", FieldType.STRING, "Country", "LastCountry"),
    _standard("_region", "Region", FieldType.STRING, "Region", "LastRegion"),
    _standard("_postal_code", "Postal code", FieldType.STRING, "PostalCode", "Postcode"),
    _standard("_tz", "Time zone", FieldType.TIMEZONE, "Timezone", "tz"),
)

STANDARD_FIELDS: Mapping[str, FieldDefinition] = {field.name: field for field, _ in _STANDARD}
"""The standard fields by canonical API name, in the order the guide lists them."""

RESERVED_NAMES = frozenset({"profile_id", "_id", "_md5", "_xxh", "_xxm", "subscriptions", "status"})
"""Names a custom field may not take: the profile's identifiers and the import payload's keys."""

_STANDARD_BY_KEY: Mapping[str, str] = {
    key.casefold(): field.name for field, aliases in _STANDARD for key in (field.name, *aliases)
}


def standard_field_name(name: str) -> str | None:
    """The canonical name of the standard field `name` names (canonical or alias, any case)."""
    return _STANDARD_BY_KEY.get(name.casefold())
