"""Conditions of a model spec (goal, eligibility): a small, safe expression language.

    commerce.order.priceTotal > 0
    eventType = 'commerce.purchases' and _{tenant}.channel in ('web', 'app')
    not (web.webPageDetails.isErrorPage = true) or _{tenant}.loyaltyTier is not null

Comparisons (``=``, ``!=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``) of a field path with a
literal; ``in (...)`` and ``not in (...)`` lists; ``is null`` / ``is not null``; combined
with ``and``, ``or``, ``not`` and parentheses. Literals are numbers, ``true``/``false`` and
quoted strings ('...' or "..."). A condition is parsed into a tree and rendered from it, so
nothing of its text reaches the SQL unchecked; strings that Spark and DuckDB would read
differently (a quote or a backslash inside) are refused rather than escaped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Union

from cmle.modelspec.paths import FieldPath, PathError

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<str>'[^']*'|"[^"]*")
    | (?P<op>>=|<=|!=|<>|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_{][A-Za-z0-9_{}]*(?:\[\])?(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[\])?)*)
    )""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
_BAD_STRING = re.compile(r"['\\\x00-\x1f]")
MAX_LENGTH = 2000


class ConditionError(ValueError):
    """A condition that does not parse or uses something outside the language."""


@dataclass(frozen=True)
class Literal:
    value: Union[str, int, float, bool]

    def sql(self) -> str:
        v = self.value
        if isinstance(v, bool):
            return "TRUE" if v else "FALSE"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else _fail(f"the number {v} is not finite")
        return f"'{v}'"


@dataclass(frozen=True)
class Compare:
    field: FieldPath
    op: str  # = <> < <= > >= in notin isnull notnull
    values: tuple[Literal, ...] = ()

    def sql(self, tenant: str, qualifier: str) -> str:
        col = self.field.resolve(tenant).sql(qualifier)
        if self.op == "isnull":
            return f"{col} IS NULL"
        if self.op == "notnull":
            return f"{col} IS NOT NULL"
        if self.op in ("in", "notin"):
            items = ", ".join(v.sql() for v in self.values)
            return f"{col} {'NOT IN' if self.op == 'notin' else 'IN'} ({items})"
        return f"{col} {self.op} {self.values[0].sql()}"


@dataclass(frozen=True)
class Not:
    operand: "Node"

    def sql(self, tenant: str, qualifier: str) -> str:
        return f"NOT ({self.operand.sql(tenant, qualifier)})"


@dataclass(frozen=True)
class Bool:
    op: str  # AND | OR
    operands: tuple["Node", ...]

    def sql(self, tenant: str, qualifier: str) -> str:
        return "(" + f" {self.op} ".join(o.sql(tenant, qualifier) for o in self.operands) + ")"


Node = Union[Compare, Not, Bool]


def _fail(message: str):
    raise ConditionError(message)


@dataclass(frozen=True)
class Condition:
    """A parsed condition: :meth:`sql` renders it, :meth:`fields` lists the paths it reads."""

    text: str
    tree: Node

    def sql(self, tenant: str, qualifier: str = "") -> str:
        """Spark SQL of the condition (a boolean; NULL comparisons are false in WHEN/WHERE)."""
        return self.tree.sql(tenant, qualifier)

    def fields(self) -> tuple[FieldPath, ...]:
        out: list[FieldPath] = []

        def walk(node):
            if isinstance(node, Compare):
                if node.field not in out:
                    out.append(node.field)
            elif isinstance(node, Not):
                walk(node.operand)
            else:
                for o in node.operands:
                    walk(o)

        walk(self.tree)
        return tuple(out)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ConditionError(f"cannot read the condition near {text[pos:pos + 20].strip()!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "word" and value.lower() in _KEYWORDS:
            kind, value = "kw", value.lower()
        out.append((kind, value))
    return out


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self, kind: str | None = None, value: str | None = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        k, v = self.tokens[self.i]
        return (kind is None or k == kind) and (value is None or v == value)

    def take(self, kind: str, value: str | None = None, what: str = "") -> str:
        if not self.peek(kind, value):
            got = self.tokens[self.i][1] if self.i < len(self.tokens) else "the end"
            raise ConditionError(f"expected {what or value or kind}, found {got!r}")
        self.i += 1
        return self.tokens[self.i - 1][1]

    def parse(self) -> Node:
        if not self.tokens:
            raise ConditionError("the condition is empty")
        node = self.disjunction()
        if self.i != len(self.tokens):
            raise ConditionError(f"unexpected {self.tokens[self.i][1]!r}")
        return node

    def disjunction(self) -> Node:
        parts = [self.conjunction()]
        while self.peek("kw", "or"):
            self.i += 1
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Bool("OR", tuple(parts))

    def conjunction(self) -> Node:
        parts = [self.negation()]
        while self.peek("kw", "and"):
            self.i += 1
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else Bool("AND", tuple(parts))

    def negation(self) -> Node:
        if self.peek("kw", "not"):
            self.i += 1
            return Not(self.negation())
        if self.peek("punct", "("):
            self.i += 1
            node = self.disjunction()
            self.take("punct", ")", "')'")
            return node
        return self.comparison()

    def comparison(self) -> Node:
        word = self.take("word", what="a field path")
        try:
            field = FieldPath.parse(word)
        except PathError as exc:
            raise ConditionError(str(exc)) from None
        if field.has_array:
            raise ConditionError(f"{word}: conditions compare single fields; an array path ([]) is only for "
                                 "numeric features")
        if self.peek("kw", "is"):
            self.i += 1
            negated = self.peek("kw", "not")
            if negated:
                self.i += 1
            self.take("kw", "null", "null")
            return Compare(field, "notnull" if negated else "isnull")
        negated = self.peek("kw", "not")
        if negated:
            self.i += 1
            self.take("kw", "in", "in")
            return Compare(field, "notin", self.literal_list())
        if self.peek("kw", "in"):
            self.i += 1
            return Compare(field, "in", self.literal_list())
        op = self.take("op", what="a comparison (=, !=, <, <=, >, >=, in, is null)")
        return Compare(field, "<>" if op == "!=" else op, (self.literal(),))

    def literal_list(self) -> tuple[Literal, ...]:
        self.take("punct", "(", "'('")
        items = [self.literal()]
        while self.peek("punct", ","):
            self.i += 1
            items.append(self.literal())
        self.take("punct", ")", "')'")
        return tuple(items)

    def literal(self) -> Literal:
        if self.peek("num"):
            text = self.take("num")
            value: Union[int, float] = float(text) if any(c in text for c in ".eE") else int(text)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConditionError(f"the number {text} is not finite")
            if isinstance(value, int) and abs(value) >= 2**63:
                raise ConditionError(f"the number {text} is out of range")
            return Literal(value)
        if self.peek("str"):
            raw = self.take("str")[1:-1]
            if _BAD_STRING.search(raw):
                raise ConditionError(f"the string {raw!r} holds a quote, a backslash or a control character, "
                                     "which the engines read differently; use another value or 'in' a list")
            return Literal(raw)
        if self.peek("kw", "true") or self.peek("kw", "false"):
            return Literal(self.take("kw") == "true")
        got = self.tokens[self.i][1] if self.i < len(self.tokens) else "the end"
        raise ConditionError(f"expected a value (a number, 'text', true or false), found {got!r}")


def parse_condition(text: str) -> Condition:
    """Parse a condition; :class:`ConditionError` says what is wrong."""
    if not isinstance(text, str):
        raise ConditionError("a condition must be a string such as \"commerce.order.priceTotal > 0\"")
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"the condition is longer than {MAX_LENGTH} characters")
    return Condition(text=text.strip(), tree=_Parser(text).parse())


__all__ = ["Condition", "ConditionError", "parse_condition"]
