"""The subset of PQL (Profile Query Language) that audience rules render to.

Rules compare profile attributes under ``_{tenant}`` with numbers or strings and combine
the comparisons with ``and``/``or``/``not`` and parentheses, e.g.
``_cmle.propensity >= 0.2 and _cmle.propensity <= 0.93`` or ``_cmle.bucket = "high"``.
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


def to_sql(pql: str, tenant_id: str) -> str:
    """A SQL predicate over columns named like the attributes under ``_{tenant}``."""
    prefix = f"_{tenant_id}."
    out: list[str] = []
    pos = 0
    text = pql.strip()
    depth = 0
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
            if word.lower() in _KEYWORDS:
                out.append(_KEYWORDS[word.lower()])
            elif word in ("true", "false"):
                out.append(word.upper())
            elif word.startswith(prefix) and word.count(".") == 1:
                out.append('"' + word[len(prefix):] + '"')
            else:
                raise PlatformError(f"PQL attribute {word!r} is not a field under _{tenant_id} in {pql!r}")
    if depth:
        raise PlatformError(f"unbalanced parentheses in PQL {pql!r}")
    return " ".join(out)
