"""Request/response types and the route table of the AEP double."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, unquote

ROUTES: dict[tuple[str, str], Callable] = {}


def norm(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", template.rstrip("/"))


def route(method: str, template: str):
    """Register a handler for ``method`` and a full path template (``{x}`` = any segment)."""
    def deco(fn):
        ROUTES[(method.upper(), norm(template))] = fn
        return fn
    return deco


class HTTPErr(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict | None = None):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body if body is not None else {"message": f"HTTP {status}"}
        self.headers = headers or {}


def aep_error(status: int, code: str, message: str) -> HTTPErr:
    """An error body in the shape most AEP services use."""
    return HTTPErr(status, {"type": f"https://ns.adobe.com/aep/errors/{code}", "title": message.split(".")[0],
                            "status": status, "error_code": code, "message": message, "detail": message})


@dataclass
class Req:
    method: str
    path: str  # raw (URL-encoded) path
    query_string: str
    headers: dict[str, str]  # lower-case keys
    body: bytes
    args: list[str] = field(default_factory=list)  # path parameters, URL-decoded, in order
    token: str = ""

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def q(self, name: str, default: str | None = None) -> str | None:
        vals = self.query.get(name)
        return vals[0] if vals else default

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8")) if self.body else None
        except ValueError:
            raise HTTPErr(400, {"message": "body is not JSON"}) from None

    def arg(self, i: int) -> str:
        return unquote(self.args[i])


@dataclass
class Resp:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def property_filter(value: str | None) -> list[tuple[str, str, str]]:
    """``a==b,c!=d`` -> [(a, '==', b), (c, '!=', d)] (AEP's ``property`` query parameter)."""
    out = []
    for part in (value or "").split(","):
        m = re.match(r"^\s*([^=!<>~]+?)\s*(==|!=|>=|<=|~|>|<)\s*(.*)$", part)
        if m:
            out.append((m.group(1), m.group(2), m.group(3)))
    return out


def matches_filters(obj: dict, filters: list[tuple[str, str, str]]) -> bool:
    for key, op, value in filters:
        cur: Any = obj
        for part in key.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        text = "" if cur is None else str(cur).lower() if isinstance(cur, bool) else str(cur)
        if op == "==" and text != value:
            return False
        if op == "!=" and text == value:
            return False
    return True
