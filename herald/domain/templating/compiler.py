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

The program is shaped for speed (bench/bench_render.py): a field the template reads more than
once is looked up once per render, before the first output; a tag is one call of a lookup
filter that also prints the value; and the text and values between two statements are one
`"".join` and one `yield`, so the per-yield size check costs little.
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
_INCLUDES = (tree.Fragment, tree.Part, tree.RandomFragment)
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
    compiler = _Compiler(_repeated_fields(body))
    main = compiler.block(body)
    program = nodes.Template([*compiler.prologue, *main])
    program.set_environment(_ENVIRONMENT)
    program.set_lineno(1)
    code = _ENVIRONMENT.compile(program)
    jinja = _ENVIRONMENT.template_class.from_code(_ENVIRONMENT, code, _ENVIRONMENT.make_globals(None))
    return CompiledTemplate(source, body, jinja)


# ---- tree → Jinja nodes ---------------------------------------------------------------------


_FieldUse = tuple[str, tuple[str, ...], bool]  # namespace, path, printed (else read as a value)


class _Compiler:
    def __init__(self, repeated: frozenset[_FieldUse] = frozenset()) -> None:
        self.scopes: list[dict[str, str]] = []  # loop variable name → Jinja name, innermost last
        self.current: list[str] = []  # Jinja names of anonymous loops' elements, innermost last
        self.count = 0
        # A field's value cannot change during a render, so one the template reads more than
        # once is read once, by an assignment in the prologue (`_f1 = json.store.url`).
        self.repeated = repeated
        self.hoisted: dict[_FieldUse, str] = {}  # → the Jinja name holding it
        self.prologue: list[nodes.Node] = []

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def block(self, body: Sequence[tree.Node]) -> list[nodes.Node]:
        result: list[nodes.Node] = []
        pending: list[nodes.Expr] = []  # text and values since the last statement, in order
        for node in body:
            if isinstance(node, tree.Text):
                pending.append(nodes.Const(node.text))
            elif isinstance(node, tree.Output) and not isinstance(node.expr, _INCLUDES):
                pending.append(_at(self.text(node.expr), node.line))
            elif isinstance(node, tree.Output | tree.Remote):
                # An include's text can be as long as a whole message: a chunk of its own, so
                # the size check sees it before the next one is rendered.
                result.extend(_chunks(pending))
                expr = self.remote(node) if isinstance(node, tree.Remote) else self.expr(node.expr)
                result.append(nodes.Output([_at(expr, node.line)]))
                pending = []
            else:
                result.extend(_chunks(pending))
                result.append(self.statement(node))
                pending = []
        result.extend(_chunks(pending))
        return result

    def field(self, expr: tree.Field, printed: bool) -> nodes.Expr:
        """A field's value (or, `printed`, its text): looked up here, or read from the prologue."""
        use = (expr.namespace, expr.path, printed)
        name = self.hoisted.get(use)
        if name is None:
            node = _lookup(nodes.Name(_ROOTS[expr.namespace], "load"), expr.path)
            if printed:
                node = _printed(node)
            if use not in self.repeated:
                return node
            name = self.hoisted[use] = self.fresh("_f")
            self.prologue.append(nodes.Assign(nodes.Name(name, "store"), node))
        return nodes.Name(name, "load")

    def text(self, expr: tree.Expr) -> nodes.Expr:
        """The value of `expr` as the text it inserts."""
        return self.field(expr, printed=True) if isinstance(expr, tree.Field) else _printed(self.expr(expr))

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
            nodes.Const(part.text) if isinstance(part, tree.Text) else self.text(part.expr)
            for part in node.url
        ]
        return _at(_filter(nodes.Concat(parts), "remote"), node.line)

    def expr(self, expr: tree.Expr) -> nodes.Expr:
        if isinstance(expr, tree.Literal):
            return nodes.Const(expr.value)
        if isinstance(expr, tree.ArrayLiteral):
            return nodes.List([self.expr(item) for item in expr.items])
        if isinstance(expr, tree.Field):
            return self.field(expr, printed=False)
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


def _printed(node: nodes.Expr) -> nodes.Expr:
    """`node` as the text it inserts (always a str: outputs rely on it)."""
    if isinstance(node, nodes.Filter) and node.name in _PRINTED and node.node is not None:
        return _filter(node.node, _PRINTED[node.name], *node.args)  # look up and print in one call
    if isinstance(node, nodes.Filter) and node.name in _TEXT_FILTERS:
        return node
    return _filter(node, "text")


def _repeated_fields(body: Sequence[tree.Node]) -> frozenset[_FieldUse]:
    """The fields a render may read more than once: used twice, or inside a loop's body."""
    counts: dict[_FieldUse, int] = {}

    def statements(nodes_: Sequence[tree.Node], weight: int) -> None:
        for node in nodes_:
            if isinstance(node, tree.Output):
                value(node.expr, weight, printed=True)
            elif isinstance(node, tree.Remote):
                statements(node.url, weight)
            elif isinstance(node, tree.If):
                value(node.condition, weight, printed=False)
                statements(node.body, weight)
                statements(node.orelse, weight)
            elif isinstance(node, tree.For):
                value(node.iterable, weight, printed=False)
                statements(node.body, 2)
                statements(node.orelse, weight)

    def value(expr: tree.Expr, weight: int, printed: bool) -> None:
        if isinstance(expr, tree.Field):
            use = (expr.namespace, expr.path, printed)
            counts[use] = counts.get(use, 0) + weight
        elif isinstance(expr, tree.Call | tree.ArrayLiteral):
            for arg in expr.args if isinstance(expr, tree.Call) else expr.items:
                value(arg, weight, printed=False)
        elif isinstance(expr, tree.Compare | tree.Logic):
            value(expr.left, weight, printed=False)
            value(expr.right, weight, printed=False)
        elif isinstance(expr, tree.Not):
            value(expr.operand, weight, printed=False)

    statements(body, 1)
    return frozenset(use for use, count in counts.items() if count > 1)


def _lookup(node: nodes.Expr, path: Sequence[str]) -> nodes.Expr:
    """`node.a.b.c`: keys and indexes only, read by the `at` filters up to two steps per call."""
    for start in range(0, len(path), 2):
        steps = path[start : start + 2]
        node = _filter(node, "at" if len(steps) == 1 else "at2", *(nodes.Const(key) for key in steps))
    return node


# The filter that looks a value up and prints it, for each lookup filter.
_PRINTED = {"at": "text_at", "at2": "text_at2"}
# Filters whose result is text already.
_TEXT_FILTERS = frozenset(("format", "urlencode", "urldecode", "crypt", "text"))


# A chunk (one `yield` of the program) holds at most this many values: the output size is
# checked per chunk, so this bounds how much a render holds before the check sees it.
_VALUES_PER_CHUNK = 16


def _chunks(pieces: Sequence[nodes.Expr]) -> list[nodes.Node]:
    """Text and values as Output nodes that each yield one string; few chunks make a fast render."""
    outputs: list[nodes.Node] = []
    group: list[nodes.Expr] = []
    values = 0
    for piece in pieces:
        if not isinstance(piece, nodes.Const):
            if values == _VALUES_PER_CHUNK:
                outputs.append(_chunk(group))
                group, values = [], 0
            values += 1
        group.append(piece)
    if group:
        outputs.append(_chunk(group))
    return outputs


def _chunk(group: list[nodes.Expr]) -> nodes.Output:
    """An Output with one child: the pieces joined by `"".join` (the `concat` filter).

    Every piece is text (a Const, or a value through `_printed`), so the environment needs no
    `finalize` and the join needs no `str` per piece.
    """
    texts = [piece.value for piece in group if isinstance(piece, nodes.Const)]
    if len(texts) == len(group):
        return nodes.Output([nodes.TemplateData("".join(texts))])
    if len(group) == 1:
        return nodes.Output(group)
    line = next(piece.lineno for piece in group if not isinstance(piece, nodes.Const))
    return nodes.Output([_at(_filter(nodes.Tuple(group, "load"), "concat"), line)])


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


# The lookup filters: most tags are a one- or two-step lookup, so these are unrolled per step
# count and test for a plain dict inline; a Python call costs as much as the lookup itself.


def _value_at(obj: Any, key: str) -> Any:
    """`obj.key`: see `_member`."""
    return obj.get(key) if type(obj) is dict else _member(obj, key)


def _value_at2(obj: Any, first: str, second: str) -> Any:
    """`obj.first.second`."""
    obj = obj.get(first) if type(obj) is dict else _member(obj, first)
    return obj.get(second) if type(obj) is dict else _member(obj, second)


def _text_at(obj: Any, key: str) -> str:
    """`{obj.key}`: the value as it is inserted."""
    obj = obj.get(key) if type(obj) is dict else _member(obj, key)
    return obj if type(obj) is str else to_text(obj)


def _text_at2(obj: Any, first: str, second: str) -> str:
    """`{obj.first.second}`: the value as it is inserted."""
    obj = obj.get(first) if type(obj) is dict else _member(obj, first)
    obj = obj.get(second) if type(obj) is dict else _member(obj, second)
    return obj if type(obj) is str else to_text(obj)


class _Environment(SandboxedEnvironment):
    """A sandbox whose templates read data only by key and call nothing."""

    def getitem(self, obj: Any, argument: Any) -> Any:
        # Programs read data through the lookup filters and emit no Getitem; this keeps any
        # that Jinja itself might emit to keys and indexes too.
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


_ENVIRONMENT = _Environment(autoescape=False, cache_size=0)
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
        "at": _value_at,
        "at2": _value_at2,
        "text_at": _text_at,
        "text_at2": _text_at2,
        "concat": "".join,
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
