"""The subset of PQL (Profile Query Language) that audience rules render to.

Rules compare profile attributes under ``_{tenant}`` with numbers or strings and combine
the comparisons with ``and``/``or``/``not`` and parentheses, e.g.
``_cmle.propensity >= 0.2 and _cmle.propensity <= 0.93`` or ``_cmle.bucket = "high"``;
an array of objects is tested with PQL's logical quantifier ``exists``:
``(exists F from _cmle.factors where F.feature = "emails_opened")``.
AEP evaluates the PQL itself; the embedded platform translates it to a SQL predicate with
:func:`to_sql`. Anything outside the subset is refused rather than guessed.
"""

from __future__ import annotations

import re

from cmle.errors import PlatformError

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<op>>=|<=|!=|=|<|>)
    | (?P<paren>[()])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""", re.VERBOSE)

_KEYWORDS = {"and": "AND", "or": "OR", "not": "NOT"}


def _condition_end(text: str, pos: int) -> int:
    """Where an ``exists`` condition starting at ``pos`` ends: the closing parenthesis of the
    group the ``exists`` stands in, or the end of the text."""
    depth = 0
    in_string = False
    i = pos
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return len(text)


def to_sql(pql: str, tenant_id: str) -> str:
    """A SQL predicate over columns named like the attributes under ``_{tenant}``.

    Besides comparisons, ``exists F from _tenant.items where <condition on F.field>`` (or
    ``: <condition>``, PQL's logical quantifier over an array of objects) becomes a DuckDB
    list filter; the condition runs to the end of the enclosing parentheses."""
    return _translate(pql, pql.strip(), tenant_id, set())


def _translate(pql: str, text: str, tenant_id: str, variables: set[str]) -> str:
    prefix = f"_{tenant_id}."
    out: list[str] = []
    pos = 0
    depth = 0

    def word_at(p: int) -> tuple[str, int]:
        m = _TOKEN.match(text, p)
        if not m or not m.group("word"):
            raise PlatformError(f"PQL exists: expected a name near {text[p:p + 20]!r} in {pql!r}")
        return m.group("word"), m.end()

    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise PlatformError(f"PQL not supported by the embedded platform near {text[pos:pos + 20]!r} in {pql!r}")
        pos = m.end()
        if m.group("num"):
            out.append(m.group("num"))
        elif m.group("str"):
            out.append("'" + m.group("str")[1:-1].replace('\\"', '"').replace("'", "''") + "'")
        elif m.group("op"):
            out.append("<>" if m.group("op") == "!=" else m.group("op"))
        elif m.group("paren"):
            depth += 1 if m.group("paren") == "(" else -1
            if depth < 0:
                raise PlatformError(f"unbalanced parentheses in PQL {pql!r}")
            out.append(m.group("paren"))
        else:
            word = m.group("word")
            if word.lower() == "exists":
                var, pos = word_at(pos)
                kw, pos = word_at(pos)
                array, pos = word_at(pos)
                if kw.lower() != "from" or not array.startswith(prefix) or array.count(".") != 1:
                    raise PlatformError(f"PQL exists: expected 'exists VAR from _{tenant_id}.ARRAY where ...' in {pql!r}")
                rest = text[pos:].lstrip()
                if rest.lower().startswith("where"):
                    pos = len(text) - len(rest) + len("where")
                elif rest.startswith(":"):
                    pos = len(text) - len(rest) + 1
                else:
                    raise PlatformError(f"PQL exists: expected 'where' or ':' after {array} in {pql!r}")
                end = _condition_end(text, pos)
                cond = _translate(pql, text[pos:end].strip(), tenant_id, variables | {var})
                out.append(f'len(list_filter("{array[len(prefix):]}", lambda {var}: {cond})) > 0')
                pos = end
            elif word.lower() in _KEYWORDS:
                out.append(_KEYWORDS[word.lower()])
            elif word in ("true", "false"):
                out.append(word.upper())
            elif word.startswith(prefix) and word.count(".") == 1:
                out.append('"' + word[len(prefix):] + '"')
            elif "." in word and word.split(".", 1)[0] in variables and word.count(".") == 1:
                var, field = word.split(".")
                out.append(f'{var}."{field}"')
            else:
                raise PlatformError(f"PQL attribute {word!r} is not a field under _{tenant_id} in {pql!r}")
    if depth:
        raise PlatformError(f"unbalanced parentheses in PQL {pql!r}")
    return " ".join(out)
