"""Safe filter expressions over a result's columns, e.g. ``rsi_14 < 30 and close > sma_200``.

The text is parsed with :mod:`ast` and compiled into a closure over a whitelist
of node types: comparisons, ``and`` / ``or`` / ``not``, arithmetic, numbers,
strings and column names. Nothing is passed to ``eval``; calls, attributes,
subscripts and unknown names are rejected before the scan starts. So are texts
longer than :data:`MAX_LENGTH` characters and trees nested deeper than
:data:`MAX_DEPTH`, checked before any recursion could exhaust the stack.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Row = Mapping[str, object]
_Node = Callable[[Row], object]

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_ARITH = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}

MAX_LENGTH = 2000
"""The most characters a filter may have (``not`` nested 500 times fits in it)."""

MAX_DEPTH = 32
"""The deepest a filter's expressions may nest (``a and b and c`` is one level, not three)."""


def _number(value: object) -> float:
    """Let arithmetic touch numbers only (no string repetition, no huge allocations)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"arithmetic on {type(value).__name__}")
    return value


class FilterExpression:
    """A compiled boolean expression over named columns; call it with a row mapping.

    Raises ``ValueError`` at construction for a syntax error, a construct that
    is not allowed, or a name that is not one of ``columns`` (the message lists
    the valid names).
    """

    def __init__(self, text: str, columns: Iterable[str]) -> None:
        self.text = text.strip()
        self.columns = tuple(columns)
        if len(self.text) > MAX_LENGTH:
            raise ValueError(f"filter is {len(self.text)} characters long; "
                             f"the most allowed is {MAX_LENGTH}")
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            raise ValueError(f"filter {self.text!r} is not a valid expression: {exc.msg} "
                             f"(example: 'rsi_14 < 30 and close > sma_200')") from exc
        except (RecursionError, MemoryError) as exc:  # the parser's own stack, Python-dependent
            raise ValueError(f"filter nests too deeply to parse; the most allowed is "
                             f"{MAX_DEPTH} levels") from exc
        depth = _depth(tree.body)
        if depth > MAX_DEPTH:
            raise ValueError(f"filter nests {depth} levels deep; the most allowed is "
                             f"{MAX_DEPTH} (a chain like 'a and b and c' counts as one level)")
        self._allowed = frozenset(self.columns)
        self._fn = self._compile(tree.body)

    def __repr__(self) -> str:
        return f"FilterExpression({self.text!r})"

    def __call__(self, row: Row) -> bool:
        """Return whether ``row`` passes; arithmetic errors (0 division) count as a miss."""
        try:
            return bool(self._fn(row))
        except (ArithmeticError, TypeError):
            return False

    def _compile(self, node: ast.expr) -> _Node:
        method = getattr(self, f"_compile_{type(node).__name__}", None)
        if method is None:
            raise ValueError(f"filter {self.text!r}: {type(node).__name__} is not allowed; use "
                             "column names, numbers, strings, comparisons, and/or/not, + - * /")
        return method(node)

    def _compile_Name(self, node: ast.Name) -> _Node:
        name = node.id
        if name not in self._allowed:
            raise ValueError(f"filter {self.text!r}: unknown column {name!r}; valid columns: "
                             f"{', '.join(sorted(self._allowed))}")
        return lambda row: row[name]

    def _compile_Constant(self, node: ast.Constant) -> _Node:
        value = node.value
        if not isinstance(value, int | float | str) or isinstance(value, bool):
            raise ValueError(f"filter {self.text!r}: constant {value!r} is not allowed")
        return lambda row: value

    def _compile_BoolOp(self, node: ast.BoolOp) -> _Node:
        parts = [self._compile(v) for v in node.values]
        stop_when = not isinstance(node.op, ast.And)  # `and` stops at a falsy value

        def evaluate(row: Row) -> object:
            for part in parts:
                value = part(row)
                if bool(value) is stop_when:
                    return value
            return value  # like Python: the last operand's value

        return evaluate

    def _compile_UnaryOp(self, node: ast.UnaryOp) -> _Node:
        operand = self._compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda row: not operand(row)
        if isinstance(node.op, ast.USub):
            return lambda row: -_number(operand(row))
        return self._compile_unknown(node.op)

    def _compile_BinOp(self, node: ast.BinOp) -> _Node:
        op = _ARITH.get(type(node.op))
        if op is None:
            return self._compile_unknown(node.op)
        left, right = self._compile(node.left), self._compile(node.right)
        return lambda row: op(_number(left(row)), _number(right(row)))

    def _compile_Compare(self, node: ast.Compare) -> _Node:
        found = [_COMPARE.get(type(o)) for o in node.ops]
        if None in found:
            bad = node.ops[found.index(None)]
            return self._compile_unknown(bad)
        ops = [op for op in found if op is not None]
        terms = [self._compile(node.left), *(self._compile(c) for c in node.comparators)]

        def compare(row: Row) -> bool:
            left = terms[0](row)
            for op, term in zip(ops, terms[1:], strict=True):
                right = term(row)
                if not op(left, right):
                    return False  # a chain stops at its first false link, as in Python
                left = right
            return True

        return compare

    def _compile_unknown(self, op: ast.AST) -> _Node:
        raise ValueError(f"filter {self.text!r}: operator {type(op).__name__} is not allowed")


def _depth(root: ast.expr) -> int:
    """Return how deeply expressions nest under ``root`` (1 for a lone name), without recursion."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node)
                     if isinstance(child, ast.expr))
    return deepest
