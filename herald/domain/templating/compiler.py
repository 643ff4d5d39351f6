"""Compile the template tree to a Jinja2 program and render it in a locked-down sandbox.

The tree becomes Jinja2 nodes directly (never Jinja source text), so template text is
always literal data and can never be read as Jinja syntax. The program runs in a
`SandboxedEnvironment` narrowed further:

- every `a.b` is a key or index lookup in the data (mappings, lists); Python attributes
  are never read, so `{lead.__class__}` is just a missing field and renders empty;
- nothing is callable from a template: every function is a registered filter or test;
- loops may run at most MAX_LOOP_ITERATIONS iterations per message in all, fragments and
  parts nest at most MAX_NESTING deep, and a message is at most MAX_OUTPUT_CHARS long;
  going over raises TemplateRenderError.

Inserted values are not HTML-escaped, in any channel: the guide inserts profile data, JSON
and remote HTML as they are, and authors put markup in them on purpose. Loops go in the
data's own order (JSON document order for objects) and count the index from 0.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Template, nodes, pass_context
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import SandboxedEnvironment

from herald.domain.templating import tree
from herald.domain.templating.conditions import COMPARISONS
from herald.domain.templating.context import RenderContext
from herald.domain.templating.errors import TemplateRenderError, TemplateSyntaxError
from herald.domain.templating.functions import (
    add_date,
    crypt,
    format_value,
    length,
    limit,
    urldecode,
    urlencode,
)
from herald.domain.templating.parser import parse
from herald.domain.templating.values import is_empty, to_text

MAX_LOOP_ITERATIONS = 10_000
MAX_OUTPUT_CHARS = 2_000_000
MAX_NESTING = 10

# Jinja names the data is bound to; template names never become Jinja names.
_ROOTS = {
    "lead": "lead",
    "subscription": "subscription",
    "relation": "relation",
    "loyalty": "loyalty",
    "json": "json",
    "query": "query",
    "system": "_sys",
}
_VARIABLES = "_vars"
_STATE = "_r"


@dataclass(frozen=True, slots=True, eq=False)
class CompiledTemplate:
    """A parsed and compiled template, ready to render any number of messages."""

    source: str
    tree: tuple[tree.Node, ...]
    jinja_template: Template = field(repr=False)

    def render(self, context: RenderContext) -> str:
        """The message text for `context`; missing values render empty."""
        return _Render(context).run(self)


@functools.lru_cache(maxsize=512)
def compile_template(source: str) -> CompiledTemplate:
    """Parse and compile `source` (cached by its text); raises TemplateSyntaxError."""
    body = parse(source)
    program = nodes.Template(_Compiler().block(body))
    program.set_environment(_ENVIRONMENT)
    program.set_lineno(1)
    code = _ENVIRONMENT.compile(program)
    jinja = _ENVIRONMENT.template_class.from_code(_ENVIRONMENT, code, _ENVIRONMENT.make_globals(None))
    return CompiledTemplate(source, body, jinja)


# ---- tree → Jinja nodes ---------------------------------------------------------------------


class _Compiler:
    def __init__(self) -> None:
        self.scopes: list[dict[str, str]] = []  # loop variable name → Jinja name, innermost last
        self.current: list[str] = []  # Jinja names of anonymous loops' elements, innermost last
        self.count = 0

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def block(self, body: Sequence[tree.Node]) -> list[nodes.Node]:
        result: list[nodes.Node] = []
        pending: list[nodes.Expr] = []
        for node in body:
            if isinstance(node, tree.Text):
                pending.append(nodes.TemplateData(node.text))
            elif isinstance(node, tree.Output):
                pending.append(_at(self.expr(node.expr), node.line))
            elif isinstance(node, tree.Remote):
                pending.append(self.remote(node))
            else:
                if pending:
                    result.append(nodes.Output(pending))
                    pending = []
                result.append(self.statement(node))
        if pending:
            result.append(nodes.Output(pending))
        return result

    def statement(self, node: tree.If | tree.For | tree.AutoComma) -> nodes.Node:
        if isinstance(node, tree.If):
            body, orelse = self.block(node.body), self.block(node.orelse)
            return nodes.If(self.expr(node.condition), body, [], orelse, lineno=node.line)
        if isinstance(node, tree.AutoComma):
            last = nodes.Getattr(nodes.Name("loop", "load"), "last", "load")
            comma = nodes.Output([nodes.TemplateData(",")])
            return nodes.If(nodes.Not(last), [comma], [], [], lineno=node.line)
        return self.loop(node)

    def loop(self, node: tree.For) -> nodes.Node:
        iterable = self.expr(node.iterable)
        target: nodes.Expr
        if node.anonymous:
            name = self.fresh("a")
            target = nodes.Name(name, "store")
            self.current.append(name)
            self.scopes.append({})
        else:
            names = {n: self.fresh("v") for n in (node.key, node.value) if n is not None}
            self.scopes.append(names)
            stored = [nodes.Name(names[n], "store") for n in (node.key, node.value) if n is not None]
            target = nodes.Tuple(stored, "store") if len(stored) == 2 else stored[0]
        items = nodes.Filter(iterable, "pairs" if node.key else "values", [], [], None, None)
        body = self.block(node.body)
        self.scopes.pop()
        if node.anonymous:
            self.current.pop()
        orelse = self.block(node.orelse)
        return nodes.For(target, items, body, orelse, None, False, lineno=node.line)

    def remote(self, node: tree.Remote) -> nodes.Expr:
        parts: list[nodes.Expr] = [
            nodes.Const(part.text) if isinstance(part, tree.Text) else _filter(self.expr(part.expr), "text")
            for part in node.url
        ]
        return _at(_filter(nodes.Concat(parts), "remote"), node.line)

    def expr(self, expr: tree.Expr) -> nodes.Expr:
        if isinstance(expr, tree.Literal):
            return nodes.Const(expr.value)
        if isinstance(expr, tree.ArrayLiteral):
            return nodes.List([self.expr(item) for item in expr.items])
        if isinstance(expr, tree.Field):
            return _lookup(nodes.Name(_ROOTS[expr.namespace], "load"), expr.path)
        if isinstance(expr, tree.Variable):
            if expr.bound:
                name = next(scope[expr.name] for scope in reversed(self.scopes) if expr.name in scope)
                return _lookup(nodes.Name(name, "load"), expr.path)
            return _lookup(nodes.Name(_VARIABLES, "load"), (expr.name, *expr.path))
        if isinstance(expr, tree.Current):
            return _lookup(nodes.Name(self.current[-1], "load"), expr.path)
        if isinstance(expr, tree.Fragment):
            return _filter(nodes.Const(expr.name), "fragment")
        if isinstance(expr, tree.Part):
            return _filter(nodes.Const(expr.name), "part")
        if isinstance(expr, tree.RandomFragment):
            return _filter(nodes.Const(expr.names), "randomfragment")
        if isinstance(expr, tree.Call):
            args = [self.expr(arg) for arg in expr.args]
            if expr.function == "crypt":  # crypt(algorithm value [key]) → value|crypt(algorithm, key)
                args[0], args[1] = args[1], args[0]
            return _filter(args[0], expr.function, *args[1:])
        if isinstance(expr, tree.Compare):
            return nodes.Test(self.expr(expr.left), expr.operator, [self.expr(expr.right)], [], None, None)
        if isinstance(expr, tree.Logic):
            logic = nodes.And if expr.operator == "and" else nodes.Or
            return logic(self.expr(expr.left), self.expr(expr.right))
        return nodes.Not(self.expr(expr.operand))


def _at(node: nodes.Expr, line: int) -> nodes.Expr:
    node.lineno = line
    return node


def _lookup(node: nodes.Expr, path: Sequence[str]) -> nodes.Expr:
    for key in path:
        node = nodes.Getitem(node, nodes.Const(key), "load")
    return node


def _filter(node: nodes.Expr, name: str, *args: nodes.Expr) -> nodes.Expr:
    return nodes.Filter(node, name, list(args), [], None, None)


# ---- the sandbox ----------------------------------------------------------------------------


def _member(obj: Any, key: Any) -> Any:
    """`obj.key` in a template: a mapping's key or a list's index, never a Python attribute."""
    if type(obj) is dict or isinstance(obj, Mapping):  # the exact-type test is the fast path
        return obj.get(key)
    if isinstance(obj, list | tuple) and isinstance(key, str) and key.isascii() and key.isdigit():
        index = int(key)
        return obj[index] if index < len(obj) else None
    return None


class _Environment(SandboxedEnvironment):
    """A sandbox whose templates read data only by key and call nothing."""

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _member(obj, argument)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, LoopContext):  # `loop.last` of {autocomma}; templates cannot name `loop`
            return super().getattr(obj, attribute)
        return _member(obj, attribute)

    def is_safe_callable(self, obj: Any) -> bool:
        return False


class _Render:
    """The state of rendering one message: its data, loop budget, nesting and random draws."""

    def __init__(self, context: RenderContext) -> None:
        self.context = context
        self.iterations_left = MAX_LOOP_ITERATIONS
        self.depth = 0
        self.random: random.Random | None = None
        names: dict[str, Any] = {
            "lead": context.lead,
            "subscription": context.subscription,
            "relation": context.relations,
            "loyalty": context.loyalty,
            "json": context.json,
            "query": context.query,
            "_sys": context.system,
            _VARIABLES: context.variables,
        }
        for key, value in context.defaults.items():
            target = _default_target(key)
            if target is not None:
                root, path = target
                names[root] = _with_default(names[root], path, value)
        names[_STATE] = self
        self.names = names

    def run(self, template: CompiledTemplate) -> str:
        jinja = template.jinja_template
        chunks: list[str] = []
        size = 0
        for chunk in jinja.root_render_func(jinja.new_context(self.names, shared=True)):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateRenderError(f"the message is longer than {MAX_OUTPUT_CHARS} characters")
            chunks.append(chunk)
        return "".join(chunks)

    def spend(self, iterations: int) -> None:
        self.iterations_left -= iterations
        if self.iterations_left < 0:
            raise TemplateRenderError(
                f"the loops of one message ran more than {MAX_LOOP_ITERATIONS} iterations"
            )

    def include(self, kind: str, name: str) -> str:
        """The fragment or part `name`, rendered with this message's data ("" when there is none)."""
        sources = self.context.fragments if kind == "fragment" else self.context.parts
        source = sources.get(name)
        if source is None:  # names are matched exactly first, then ignoring case (`{PART.NEW}`)
            folded = name.casefold()
            source = next((s for n, s in sources.items() if n.casefold() == folded), None)
        if source is None:
            return ""
        try:
            compiled = source if isinstance(source, CompiledTemplate) else compile_template(source)
        except TemplateSyntaxError as error:
            raise error.at(f"{kind}.{name}") from None
        if self.depth >= MAX_NESTING:
            raise TemplateRenderError(
                f"fragments and parts nest more than {MAX_NESTING} deep (does {kind}.{name} include itself?)"
            )
        self.depth += 1
        try:
            return self.run(compiled)
        finally:
            self.depth -= 1

    def choose(self, count: int) -> int:
        if self.random is None:
            self.random = random.Random(self.context.random_seed)
        return self.random.randrange(count)


@functools.lru_cache(maxsize=1024)
def _default_target(key: str) -> tuple[str, tuple[str, ...]] | None:
    """Where a defaults key (`lead._fname`, `{lead_fname}`) points: (Jinja root, path)."""
    text = key.strip()
    text = text[1:-1].strip() if text.startswith("{") and text.endswith("}") else text
    try:
        body = parse(f"{{{text}}}")
    except TemplateSyntaxError:
        return None
    if len(body) != 1 or not isinstance(body[0], tree.Output):
        return None
    expr = body[0].expr
    return (_ROOTS[expr.namespace], expr.path) if isinstance(expr, tree.Field) else None


def _with_default(data: Any, path: tuple[str, ...], value: Any) -> Any:
    """`data` with `value` at `path` where that is missing or empty; copies only what changes."""
    mapping: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    current = mapping.get(path[0])
    if len(path) == 1:
        replaced = value if is_empty(current) else current
    else:
        replaced = _with_default(current, path[1:], value)
    if replaced is current:
        return data
    return {**mapping, path[0]: replaced}


def _state(context: Context) -> _Render:
    state: _Render = context[_STATE]
    return state


@pass_context
def _pairs(context: Context, value: Any) -> list[tuple[Any, Any]]:
    """A named loop's (key, value) pairs: (index, item) of a list, (key, value) of an object."""
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    else:
        items = []
    _state(context).spend(len(items))
    return items


@pass_context
def _values(context: Context, value: Any) -> list[Any]:
    """A loop's elements: the items of a list, the values of an object."""
    if isinstance(value, Mapping):
        items = list(value.values())
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        items = []
    _state(context).spend(len(items))
    return items


@pass_context
def _fragment(context: Context, name: str) -> str:
    return _state(context).include("fragment", name)


@pass_context
def _part(context: Context, name: str) -> str:
    return _state(context).include("part", name)


@pass_context
def _random_fragment(context: Context, names: tuple[str, ...]) -> str:
    state = _state(context)
    return state.include("fragment", names[state.choose(len(names))])


@pass_context
def _remote(context: Context, url: str) -> str:
    fetch = _state(context).context.fetch_remote
    address = url.strip()
    return "" if fetch is None or not address else to_text(fetch(address))


_ENVIRONMENT = _Environment(autoescape=False, finalize=to_text, cache_size=0)
_ENVIRONMENT.filters.clear()
_ENVIRONMENT.filters.update(
    {
        "format": format_value,
        "adddate": add_date,
        "length": length,
        "limit": limit,
        "urlencode": urlencode,
        "urldecode": urldecode,
        "crypt": crypt,
        "text": to_text,
        "pairs": _pairs,
        "values": _values,
        "fragment": _fragment,
        "part": _part,
        "randomfragment": _random_fragment,
        "remote": _remote,
    }
)
_ENVIRONMENT.tests.clear()
_ENVIRONMENT.tests.update(COMPARISONS)
_ENVIRONMENT.globals.clear()
