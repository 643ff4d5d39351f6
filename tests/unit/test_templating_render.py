"""Rendering: namespaces, printing, missing values, conditions, loops, defaults, fragments, parts, remote."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from herald.domain.templating import (
    SYSTEM_TAGS,
    RenderContext,
    TemplateRenderError,
    TemplateSyntaxError,
    compile_template,
)

LEAD = {
    "_fname": "Eddie",
    "_lname": "Brock",
    "email": "eddie@example.com",
    "phones": ["+79001112233", "+79004445566"],
    "Sign": "Scorpio",
    "tags": ["vip", "Premium", "new"],
    "age": 18,
    "score": "9500",
    "zero": 0,
    "empty": "",
    "none": None,
    "flag": False,
    "bdate": date(1990, 5, 17),
    "seen": datetime(2024, 3, 1, 9, 30, tzinfo=UTC),
}
SUBSCRIPTION = {
    "email": "eddie@example.com",
    "email_domain": "example.com",
    "emails": ["eddie@example.com", "e@example.org"],
    "phone": "+79001112233",
    "phones": ["+79001112233"],
    "email_md5": "md5e",
    "phone_md5": "md5p",
}
JSON = {"object": {"model": "x17"}, "list": ["One", "Two"], "empty": [], "matrix": [[1, 2], [3]]}


def render(source: str, **data: Any) -> str:
    base: dict[str, Any] = {"lead": LEAD, "subscription": SUBSCRIPTION, "json": JSON}
    base.update(data)
    return compile_template(source).render(RenderContext(**base))


VALUES = [
    ("lead-standard", "{lead._fname} {lead._lname}", "Eddie Brock"),
    ("lead-alias-standard", "{lead_fname} {lead_lname}", "Eddie Brock"),
    ("lead-alias-plain-standard", "{lead_email}", "eddie@example.com"),
    ("lead-alias-custom", "{lead_Sign}", "Scorpio"),
    ("lead-custom-case-sensitive", "{lead.Sign}|{lead.sign}", "Scorpio|"),
    ("lead-list", "{lead.phones}", "+79001112233, +79004445566"),
    (
        "subscription-email",
        "{subscription.email} {subscription.email_domain}",
        "eddie@example.com example.com",
    ),
    (
        "subscription-lists",
        "{subscription.emails}|{subscription.phones}",
        "eddie@example.com, e@example.org|+79001112233",
    ),
    (
        "subscription-hashes",
        "{subscription.email_md5} {subscription.phone_md5} {subscription.phone}",
        "md5e md5p +79001112233",
    ),
    ("json-nested", "{json.object.model}", "x17"),
    ("json-list-index", "{json.list.1} {json.matrix.0.1}", "Two 2"),
    ("json-index-out-of-range", "[{json.list.5}]", "[]"),
    ("number", "{lead.age}", "18"),
    ("zero", "{lead.zero}", "0"),
    ("false", "{lead.flag}", "false"),
    ("date", "{lead.bdate}", "1990-05-17"),
    ("datetime-utc", "{lead.seen}", "2024-03-01T09:30:00Z"),
    ("object-as-json", "{json.object}", '{"model": "x17"}'),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in VALUES], ids=[c[0] for c in VALUES])
def test_values_print(source: str, expected: str) -> None:
    assert render(source) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (8000.0, "8000"),
        (3.3, "3.3"),
        (1e21, "1000000000000000000000"),
        (1.5e-7, "0.00000015"),
        (Decimal("10.50"), "10.50"),
        (-7, "-7"),
        (True, "true"),
        ({"a": [1, None]}, '{"a": [1, null]}'),
        ((1, "b"), "1, b"),
        (datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=3))), "2020-01-02T03:04:05+03:00"),
    ],
)
def test_how_values_print(value: Any, expected: str) -> None:
    assert render("{json.v}", json={"v": value}) == expected


MISSING = [
    ("lead-field", "{lead.nothing}"),
    ("lead-none", "{lead.none}"),
    ("lead-empty", "{lead.empty}"),
    ("deep-json", "{json.a.b.c}"),
    ("member-of-string", "{lead._fname.x}"),
    ("member-of-number", "{lead.age.x}"),
    ("subscription", "{subscription.pushes}"),
    ("relation", "{relation.r.direct.p.count}"),
    ("loyalty", "{loyalty.vip.promocode}"),
    ("query", "{query.rows}"),
    ("fragment", "{fragment.none}"),
    ("part", "{part.none}"),
    ("free-variable", "{$batch}"),
    ("system-tag", "{webversion}"),
    ("remote-without-fetcher", "{[https://example.com/x]}"),
    ("format-of-missing", '{format lead.nothing "%Y"}'),
    ("adddate-of-missing", "{adddate(lead.nothing 0 0 1)}"),
    ("crypt-of-missing", '{crypt(sha1 lead.nothing "salt")}'),
    ("urlencode-of-missing", "{urlencode(lead.nothing)}"),
    ("limit-of-missing", "{limit(lead.nothing 2)}"),
]


@pytest.mark.parametrize("source", [c[1] for c in MISSING], ids=[c[0] for c in MISSING])
def test_a_missing_value_renders_empty(source: str) -> None:
    assert render(f"[{source}]") == "[]"


@pytest.mark.parametrize("name", SYSTEM_TAGS)
def test_every_system_tag_renders_its_value_from_the_context(name: str) -> None:
    assert render(f"<{{{name}}}>", system={name: f"value of {name}"}) == f"<value of {name}>"


def test_system_tags_work_as_function_arguments() -> None:
    assert render("{urlencode(campid)}", system={"campid": "a/b c"}) == "a%2Fb%20c"


CONDITIONS = [
    # truth
    ("non-empty-string", '"x"', True),
    ("empty-string", '""', False),
    ("string-zero", '"0"', True),
    ("number-zero", "lead.zero", False),
    ("number", "lead.age", True),
    ("false-field", "lead.flag", False),
    ("missing", "lead.nothing", False),
    ("none", "lead.none", False),
    ("empty-list", "json.empty", False),
    ("list", "json.list", True),
    ("two-fields", "lead._fname and lead.Sign", True),
    ("one-field-missing", "lead._fname and lead.nothing", False),
    # equal / not_equal
    ("equal-strings", '"a" equal "a"', True),
    ("equal-is-case-sensitive", '"a" equal "A"', False),
    ("equal-number-number", '5 equal length("par 3")', True),
    ("equal-number-numeric-string", 'lead.age equal "18"', True),
    ("equal-number-float", "lead.age equal 18.0", True),
    ("equal-numeric-strings-as-text", '"5" equal "5.0"', False),
    ("equal-missing-and-empty", 'lead.nothing equal ""', True),
    ("equal-bool", "lead.flag equal false", True),
    ("equal-date-and-iso-string", 'lead.bdate equal "1990-05-17"', True),
    ("equal-datetime-and-iso-string", 'lead.seen equal "2024-03-01T12:30:00+03:00"', True),
    ("not-equal", '"a" not_equal "b"', True),
    # like / contains
    ("like", '"Eddie" like "EDDIE"', True),
    ("not-like", '"Eddie" not_like "EDDIE"', False),
    ("contains-ignores-case", 'lead._fname contains "DD"', True),
    ("contains-missing-left", 'lead.nothing contains ""', False),
    ("contains-tag", 'lead.tags contains "premium"', True),
    ("contains-tag-is-whole-item", 'lead.tags contains "prem"', False),
    ("not-contains", 'lead._fname not_contains "x"', True),
    ("not-contains-missing", 'lead.nothing not_contains "x"', True),
    # in / not_in
    ("in-list", '"One" in json.list', True),
    ("in-list-is-case-sensitive", '"one" in json.list', False),
    ("in-array-literal", '"par1" in array["par1" "par2"]', True),
    ("in-number-list", '2 in array["1" "2"]', True),
    ("in-object-keys", '"model" in json.object', True),
    ("in-string", '"dd" in lead._fname', True),
    ("in-missing", '"a" in json.nothing', False),
    ("not-in", '"Three" not_in json.list', True),
    # ordering
    ("gte-equal", "lead.age gte 18", True),
    ("gt-equal", "lead.age gt 18", False),
    ("gte-numeric-string", "lead.score gte 9000", True),
    ("lt", "lead.age lt 18.5", True),
    ("lte", "lead.age lte 17", False),
    ("gt-dates", 'lead.seen gt "2024-01-01"', True),
    ("lt-date-and-date", 'lead.bdate lt "1990-05-18"', True),
    ("gt-unordered", '"b" gt "a"', False),
    ("gt-missing", "lead.nothing gt 1", False),
    # logic
    ("or", "false or true", True),
    ("and-before-or", "true or false and false", True),
    ("parentheses", "(true or false) and false", False),
    ("not", "not lead.nothing", True),
    ("not-comparison", "not lead.age gte 21", True),
    ("function-in-condition", "length(lead.tags) equal 3", True),
]


@pytest.mark.parametrize(
    ("condition", "expected"), [c[1:] for c in CONDITIONS], ids=[c[0] for c in CONDITIONS]
)
def test_conditions(condition: str, expected: bool) -> None:
    assert render(f"{{if {condition}}}T{{else}}F{{end}}") == ("T" if expected else "F")


def test_if_without_else_and_nested_ifs() -> None:
    source = '{if lead.age gte 18}A{if lead.Sign equal "Leo"}B{else}C{end}{end}{if false}D{end}'
    assert render(source) == "AC"


def test_a_condition_prints_as_true_or_false() -> None:
    assert render('{lead.age equal 18}/{lead.nothing or "fallback"}') == "true/fallback"


LOOPS = [
    ("anonymous-list", "{for json.list}[{.}]{end}", "[One][Two]"),
    ("anonymous-object-values", "{for json.object}[{.}]{end}", "[x17]"),
    ("anonymous-member", "{for json.rows}{.city};{end}", "A;B;"),
    ("named-object", "{for $k $v = json.object}{$k}={$v}{end}", "model=x17"),
    ("named-single-variable", "{for $el = json.list}<{$el}>{end}", "<One><Two>"),
    ("named-comma", "{for $i, $el = json.list}{$i}{$el}{end}", "0One1Two"),
    ("tags-field", "{for lead.tags}{.} {end}", "vip Premium new "),
    ("subscription-emails", "{for subscription.emails}{.};{end}", "eddie@example.com;e@example.org;"),
    ("limit", "{for limit(json.list 1)}{.}{end}", "One"),
    ("nested-anonymous", "{for json.matrix}({for .}{.}{end}){end}", "(12)(3)"),
    (
        "nested-named-shadowing",
        "{for $i $x = json.matrix}{for $i $x = $x}{$i}{$x}{end}|{$i}{end}",
        "0112|003|1",
    ),
    ("empty-list-else", "{for json.empty}x{else}none{end}", "none"),
    ("missing-else", "{for json.nothing}x{else}none{end}", "none"),
    ("scalar-else", "{for lead._fname}x{else}none{end}", "none"),
    ("no-else-empty", "[{for json.empty}x{end}]", "[]"),
    ("variable-out-of-scope", "{for $el = json.list}{end}[{$el}]", "[]"),
    ("bare-name-out-of-scope", "{for $el = json.list}{end}{el}", "{el}"),
    ("autocomma", "{for json.list}{.}{autocomma}{end}", "One,Two"),
    ("autocomma-in-if", "{for json.list}{if true}{.}{autocomma}{end}{end}", "One,Two"),
    ("autocomma-innermost", "{for json.matrix}[{for .}{.}{autocomma}{end}]{autocomma}{end}", "[1,2],[3]"),
    ("autocomma-single", "{for limit(json.list 1)}{.}{autocomma}{end}", "One"),
    ("loop-var-in-condition", "{for $i $x = json.list}{if $i equal 1}{$x}{end}{end}", "Two"),
    ("bare-loop-var-in-condition", "{for $i $x = json.list}{if i equal 0}{x}{end}{end}", "One"),
    (
        "namespace-wins-over-bare-loop-name",
        "{for $i, $lead = json.list}{lead._fname}{$lead}{end}",
        "EddieOneEddieTwo",
    ),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in LOOPS], ids=[c[0] for c in LOOPS])
def test_loops(source: str, expected: str) -> None:
    assert render(source, json={**JSON, "rows": [{"city": "A"}, {"city": "B"}]}) == expected


NO_NAME = {**LEAD, "_fname": ""}
DEFAULTS = [
    ("missing", "{lead.nothing}", {"lead.nothing": "dear Customer"}, LEAD, "dear Customer"),
    ("empty-string", "{lead.empty}", {"lead.empty": "dear Customer"}, LEAD, "dear Customer"),
    ("none", "{lead.none}", {"lead.none": "x"}, LEAD, "x"),
    ("present-value-wins", "{lead._fname}", {"lead._fname": "dear Customer"}, LEAD, "Eddie"),
    ("zero-is-a-value", "{lead.zero}", {"lead.zero": "n/a"}, LEAD, "0"),
    ("key-in-braces", "{lead._fname}", {"{lead._fname}": "d"}, NO_NAME, "d"),
    ("alias-uses-field-default", "{lead_fname}", {"lead._fname": "d"}, NO_NAME, "d"),
    ("default-by-alias-key", "{lead._fname}", {"lead_fname": "d"}, NO_NAME, "d"),
    ("in-conditions", "{if lead._fname}yes{end}", {"lead._fname": "d"}, NO_NAME, "yes"),
    ("nested-json", "{json.object.colour}", {"json.object.colour": "red"}, LEAD, "red"),
    ("deep-missing-json", "{json.a.b}", {"json.a.b": "deep"}, LEAD, "deep"),
    ("system-tag", "{listname}", {"listname": "our list"}, LEAD, "our list"),
    ("invalid-keys-ignored", "{lead.nothing}", {"lead.": "x", "{if": "y", "plain text": "z"}, LEAD, ""),
]


@pytest.mark.parametrize(
    ("source", "defaults", "lead", "expected"), [c[1:] for c in DEFAULTS], ids=[c[0] for c in DEFAULTS]
)
def test_per_template_defaults_fill_empty_values(
    source: str, defaults: dict[str, str], lead: dict[str, Any], expected: str
) -> None:
    assert render(source, lead=lead, defaults=defaults) == expected


def test_defaults_do_not_change_the_callers_data() -> None:
    lead = {"_fname": ""}
    assert render("{lead._fname}", lead=lead, defaults={"lead._fname": "d"}) == "d"
    assert lead == {"_fname": ""}


def test_fragments_and_parts_render_with_the_same_data() -> None:
    fragments = {
        "header": "<style>.a { color: red }</style><h1>{lead_fname}</h1>",
        "social": "{fragment.header}!",
    }
    parts = {"NEW": "Balance: {lead.age}"}
    source = "{fragment.header}|{fragment.social}|{PART.NEW}|{part.new}"
    out = render(source, fragments=fragments, parts=parts)
    header = "<style>.a { color: red }</style><h1>Eddie</h1>"
    assert out == f"{header}|{header}!|Balance: 18|Balance: 18"


def test_a_fragment_may_be_given_compiled() -> None:
    assert render("{fragment.f}", fragments={"f": compile_template("{lead.Sign}")}) == "Scorpio"


def test_a_fragment_with_a_syntax_error_names_the_fragment() -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        render("ok {fragment.broken}", fragments={"broken": "\n{if true}"})
    assert (caught.value.path, caught.value.line) == ("fragment.broken", 2)


def test_a_fragment_that_includes_itself_is_stopped() -> None:
    with pytest.raises(TemplateRenderError, match="nest more than"):
        render("{fragment.loop}", fragments={"loop": "x{fragment.loop}"})


def test_random_fragment_is_chosen_by_the_seed() -> None:
    fragments = {"a": "A", "b": "B", "c": "C"}
    source = "{randomfragment[fragment.a fragment.b fragment.c]}"
    picks = {render(source, fragments=fragments, random_seed=seed) for seed in range(40)}
    assert picks == {"A", "B", "C"}
    for seed in ("message-1", 7):
        first = render(source * 5, fragments=fragments, random_seed=seed)
        assert render(source * 5, fragments=fragments, random_seed=seed) == first


def test_remote_content_is_fetched_per_url_and_inserted_as_is() -> None:
    calls: list[str] = []

    def fetch(url: str) -> str:
        calls.append(url)
        return "<b>{lead._fname}</b>"

    out = render(
        "a{[ https://example.com/x?s={lead.Sign}&n={lead.nothing} ]}b{[https://e.org/y]}", fetch_remote=fetch
    )
    assert out == "a<b>{lead._fname}</b>b<b>{lead._fname}</b>"
    assert calls == ["https://example.com/x?s=Scorpio&n=", "https://e.org/y"]


def test_remote_urls_can_be_collected_first_and_fetched_by_an_async_caller() -> None:
    template = compile_template("{if lead.age gte 18}{[https://example.com/adult/{lead.Sign}]}{end}")
    urls: list[str] = []

    def collect(url: str) -> str:
        urls.append(url)
        return ""

    template.render(RenderContext(lead=LEAD, fetch_remote=collect))
    fetched = {url: f"<body of {url}>" for url in urls}
    out = template.render(RenderContext(lead=LEAD, fetch_remote=fetched.__getitem__))
    assert out == "<body of https://example.com/adult/Scorpio>"


def test_a_failing_fetch_fails_the_render() -> None:
    def fetch(url: str) -> str:
        raise TimeoutError(url)

    with pytest.raises(TimeoutError):
        render("{[https://example.com]}", fetch_remote=fetch)


def test_caller_variables_are_read_with_a_dollar() -> None:
    assert render("{$segment.name}", variables={"segment": {"name": "VIP"}}) == "VIP"


def test_a_remote_block_whose_url_renders_empty_fetches_nothing() -> None:
    calls: list[str] = []

    def fetch(url: str) -> str:
        calls.append(url)
        return "body"

    assert render("[{[{json.nothing}]}]", fetch_remote=fetch) == "[]"
    assert calls == []
