"""What is a tag and what is text: CSS, JSON, scripts and stray braces pass through untouched."""

from __future__ import annotations

import pytest

from herald.domain.templating import RenderContext, compile_template

LEAD = {"_fname": "Eddie", "email": "eddie@example.com", "название_поля": "значение"}


def render(source: str, **data: object) -> str:
    return compile_template(source).render(RenderContext(lead=LEAD, **data))  # type: ignore[arg-type]


PASS_THROUGH = [
    ("css-rule", "a { color: red }"),
    ("css-fragment-example", ".cont { padding:3rem; margin:0 auto; }"),
    ("css-minified", "a{color:red}p{margin:0;padding:0}"),
    ("css-media-minified", "@media (max-width:600px){.col{width:100%!important}}"),
    ("css-media-spaced", "@media screen {\n  .col { width: 100% }\n}"),
    ("css-empty-rule", "h1{}"),
    ("css-dot-number", "{.5em}"),
    ("json-object", '{"a": 1, "b": {"c": [1, 2]}}'),
    ("json-spaced", '{ "a": 1 }'),
    ("json-array-in-object", '{"list":[{"x":1},{"y":2}]}'),
    ("json-ld", '<script type="application/ld+json">{"@context":"https://schema.org"}</script>'),
    ("double-braces", "{{ x }}"),
    ("triple-braces", "{{{}}}"),
    ("jinja-statement", "{% for x in ().__class__.__mro__ %}{{ x }}{% endfor %}"),
    ("jinja-comment", "{# note #}"),
    ("lone-open", "price { 10"),
    ("lone-close", "10 } price"),
    ("close-open", "}{"),
    ("open-at-end", "text {"),
    ("space-after-brace", "{ lead._fname }"),
    ("namespace-without-dot", "{lead}"),
    ("namespace-with-empty-field", "{lead.}"),
    ("unknown-word", "{color}"),
    (
        "amp-mustache",
        '<template type="amp-mustache">{{item.name}} {{{item.html}}} {{#items}}{{/items}}</template>',
    ),
    ("literal-in-braces", "{true} {5} {(1)}"),
    ("js-block", "function(){return 1}"),
    ("js-if-paren", "if(a){if(b){ c() }}"),
    ("js-template-literal", "`${name}`"),
    ("jquery", "{$(document)}"),
    ("bracket-list", "{[1,2]}"),
    ("loop-word-outside-loop", "{index} {element}"),
    ("else-like-word", "{endif} {elsewhere}"),
    ("plain-text", "Hello, world!"),
    ("empty", ""),
]


@pytest.mark.parametrize("source", [case[1] for case in PASS_THROUGH], ids=[case[0] for case in PASS_THROUGH])
def test_text_that_is_not_a_tag_passes_through_untouched(source: str) -> None:
    assert render(source) == source


TAGS = [
    ("tag-in-css", "a { color: red } {lead._fname}", "a { color: red } Eddie"),
    ("tag-in-json-string", '{"name": "{lead._fname}"}', '{"name": "Eddie"}'),
    (
        "tag-in-json-ld",
        '<script type="application/ld+json">{"email":"{lead.email}"}</script>',
        '<script type="application/ld+json">{"email":"eddie@example.com"}</script>',
    ),
    ("tag-inside-double-braces", "{{lead._fname}}", "{Eddie}"),
    ("tag-after-lone-brace", "{ {lead._fname}", "{ Eddie"),
    ("tag-before-lone-brace", "{lead._fname} }", "Eddie }"),
    ("namespace-any-case", "{LEAD._fname} {Lead._fname}", "Eddie Eddie"),
    ("keyword-any-case", "{IF true}yes{ELSE}no{END}", "yes"),
    ("system-tag-any-case", "{lastItem}", "42"),
    ("space-before-close", "{lead._fname  }", "Eddie"),
    ("tag-spans-lines", "{if true\n  and true}yes{end}", "yes"),
    ("unicode-field", "{lead.название_поля}", "значение"),
    ("brace-in-string", '{if "}" equal "}"}yes{end}', "yes"),
    ("quote-in-string", r'{if "a\"b" equal "a\"b"}yes{end}', "yes"),
    ("adjacent-tags", "{lead._fname}{lead._fname}", "EddieEddie"),
    ("tags-between-braces", "{{lead._fname}{lead._fname}}", "{EddieEddie}"),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in TAGS], ids=[c[0] for c in TAGS])
def test_tags_are_recognised(source: str, expected: str) -> None:
    assert render(source, system={"lastitem": 42}) == expected


def test_a_bare_name_is_a_tag_only_for_a_loop_variable_in_scope() -> None:
    source = "{index}{for $index $element = array[1 2]}[{index}={element}]{end}{index}"
    assert render(source) == "{index}[0=1][1=2]{index}"
