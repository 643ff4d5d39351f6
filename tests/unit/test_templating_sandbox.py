"""Templates cannot reach Python internals, and a render is bounded in loops, nesting and size."""

from __future__ import annotations

from typing import Any

import pytest

from herald.domain.templating import (
    MAX_LOOP_ITERATIONS,
    MAX_OUTPUT_CHARS,
    RenderContext,
    TemplateRenderError,
    TemplateSyntaxError,
    compile_template,
)


class Secretive:
    """A non-mapping object in the data: its attributes must stay unreachable."""

    secret = "leaked"

    def __str__(self) -> str:
        return "secretive"


def render(source: str, **data: Any) -> str:
    base: dict[str, Any] = {
        "lead": {"_fname": "Eddie", "tags": ["a"]},
        "json": {"obj": Secretive(), "list": [1, 2]},
        "variables": {"x": Secretive()},
    }
    base.update(data)
    return compile_template(source).render(RenderContext(**base))


ESCAPES = [
    "{lead.__class__}",
    "{lead.__class__.__mro__}",
    "{lead.__class__.__base__.__subclasses__}",
    "{lead.__init__.__globals__}",
    "{lead._fname.__class__}",
    "{lead._fname.upper}",
    "{lead.items}",
    "{lead.keys}",
    "{lead.get}",
    "{lead.tags.append}",
    "{lead.tags.__len__}",
    "{json.obj.secret}",
    "{json.obj.__dict__}",
    "{json.obj.__str__.__globals__}",
    "{$x.secret}",
    "{$x.__class__.__init__.__globals__}",
    "{$__builtins__}",
    "{$environment}",
    "{$_r.context}",
    "{fragment.__class__}",
    "{part.__init__}",
    "{for $k $v = lead.__dict__}{$k}{end}",
    "{for lead.__class__.__mro__}{.}{end}",
    "{length(lead.__class__)}",
    "{crypt(base64 json.obj.secret)}",
    '{format lead.__class__ "%Y"}',
    "{urlencode(lead.__class__.__name__)}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_python_internals_are_unreachable(source: str) -> None:
    assert render(source) in ("", "0")


def test_an_object_in_the_data_prints_but_exposes_nothing() -> None:
    assert render("{json.obj}|{json.obj.secret}|{$x}") == "secretive||secretive"


INERT = [
    "{{ 7*7 }}",
    "{{ lead.__class__ }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% raw %}{% endraw %}{% include 'x' %}",
    "{#- comment -#}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
]


@pytest.mark.parametrize("source", INERT)
def test_jinja_syntax_in_template_text_is_literal_text(source: str) -> None:
    assert render(source) == source


def test_jinja_and_template_syntax_in_data_is_never_evaluated() -> None:
    lead = {"_fname": "{{ 7*7 }}", "nick": "{lead._fname}", "x": "{% if 1 %}y{% endif %}"}
    assert (
        render("{lead._fname}|{lead.nick}|{lead.x}", lead=lead)
        == "{{ 7*7 }}|{lead._fname}|{% if 1 %}y{% endif %}"
    )


@pytest.mark.parametrize(
    "source",
    ["{lower(lead._fname)}", "{lead._fname|upper}", "{range(10)}", "{lipsum()}", "{cycler.__init__}"],
)
def test_jinja_filters_and_globals_are_not_reachable(source: str) -> None:
    try:
        out = render(source)
    except TemplateSyntaxError:
        return
    assert out == source  # not a tag: passes through as text


def test_loops_are_bounded_per_message() -> None:
    at_limit = {"rows": list(range(MAX_LOOP_ITERATIONS))}
    assert len(render("{for json.rows}x{end}", json=at_limit)) == MAX_LOOP_ITERATIONS
    with pytest.raises(TemplateRenderError, match=f"more than {MAX_LOOP_ITERATIONS} iterations"):
        render("{for json.rows}x{end}", json={"rows": list(range(MAX_LOOP_ITERATIONS + 1))})


def test_nested_loops_share_the_bound() -> None:
    square = {"rows": [list(range(150))] * 150}
    with pytest.raises(TemplateRenderError):
        render("{for json.rows}{for .}x{end}{end}", json=square)


def test_loops_in_fragments_count_towards_the_same_bound() -> None:
    rows = {"rows": list(range(MAX_LOOP_ITERATIONS // 2 + 1))}
    fragments = {"f": "{for json.rows}x{end}"}
    with pytest.raises(TemplateRenderError):
        render("{fragment.f}{fragment.f}", json=rows, fragments=fragments)


def test_output_is_bounded() -> None:
    big = "x" * (MAX_OUTPUT_CHARS // 4)
    assert len(render("{json.big}{json.big}", json={"big": big})) == MAX_OUTPUT_CHARS // 2
    with pytest.raises(TemplateRenderError, match="longer than"):
        render("{for array[1 2 3 4 5]}{json.big}{end}", json={"big": big})


def test_a_render_leaves_no_state_behind() -> None:
    template = compile_template("{for json.rows}{.}{end}")
    rows = {"rows": list(range(MAX_LOOP_ITERATIONS))}
    for _ in range(3):  # each message has its own loop budget
        template.render(RenderContext(json=rows))
