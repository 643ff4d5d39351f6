"""What a parsed template refers to: fragments, parts, system tags, remote content, loyalty programs.

A template is checked at save against these (a part it names must exist), and
its card shows them ("Внешний контент: Да/Нет"); the renderer asks whether the
author placed `{pixel}` before adding its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from herald.domain.templating import tree


@dataclass(frozen=True, slots=True)
class References:
    """The names a template uses."""

    fragments: frozenset[str] = frozenset()
    parts: frozenset[str] = frozenset()
    system_tags: frozenset[str] = frozenset()
    remote: bool = False
    loyalty: frozenset[str] = frozenset()  # programs' template names (`{loyalty.<name>.promocode}`)

    def __or__(self, other: References) -> References:
        return References(
            self.fragments | other.fragments,
            self.parts | other.parts,
            self.system_tags | other.system_tags,
            self.remote or other.remote,
            self.loyalty | other.loyalty,
        )


def references(nodes: Iterable[tree.Node]) -> References:
    """Every fragment, part, system tag and loyalty program `nodes` use, and whether they fetch remote
    content."""
    fragments: set[str] = set()
    parts: set[str] = set()
    system: set[str] = set()
    loyalty: set[str] = set()
    remote = False
    for expr in _expressions(nodes):
        if isinstance(expr, tree.Fragment):
            fragments.add(expr.name)
        elif isinstance(expr, tree.RandomFragment):
            fragments.update(expr.names)
        elif isinstance(expr, tree.Part):
            parts.add(expr.name)
        elif isinstance(expr, tree.Field) and expr.namespace == "system":
            system.add(expr.path[0])
        elif isinstance(expr, tree.Field) and expr.namespace == "loyalty":
            loyalty.add(expr.path[0])
        elif expr is _REMOTE:
            remote = True
    return References(frozenset(fragments), frozenset(parts), frozenset(system), remote, frozenset(loyalty))


_REMOTE = tree.Literal("remote")  # a marker the walk yields for each `{[url]}`


def _expressions(nodes: Iterable[tree.Node]) -> Iterator[tree.Expr]:
    for node in nodes:
        if isinstance(node, tree.Output):
            yield from _walk(node.expr)
        elif isinstance(node, tree.If):
            yield from _walk(node.condition)
            yield from _expressions(node.body)
            yield from _expressions(node.orelse)
        elif isinstance(node, tree.For):
            yield from _walk(node.iterable)
            yield from _expressions(node.body)
            yield from _expressions(node.orelse)
        elif isinstance(node, tree.Remote):
            yield _REMOTE
            yield from _expressions(node.url)


def _walk(expr: tree.Expr) -> Iterator[tree.Expr]:
    yield expr
    if isinstance(expr, tree.ArrayLiteral):
        for item in expr.items:
            yield from _walk(item)
    elif isinstance(expr, tree.Call):
        for arg in expr.args:
            yield from _walk(arg)
    elif isinstance(expr, tree.Compare | tree.Logic):
        yield from _walk(expr.left)
        yield from _walk(expr.right)
    elif isinstance(expr, tree.Not):
        yield from _walk(expr.operand)
