"""YAML with the line of every key and item, so that spec errors can name the line."""

from __future__ import annotations

from typing import Any

import yaml

Path = tuple  # keys and list indexes from the document root, e.g. ("goal", "window_days")


def load_with_lines(text: str, source: str) -> tuple[Any, dict[Path, int]]:
    """The document and ``{path: line}`` (1-based; a key's line for mapping values, the item's
    line for sequence items). Raises :class:`yaml.YAMLError` for malformed YAML."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    data = yaml.safe_load(text)
    lines: dict[Path, int] = {(): 1}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            child = (*path, k)
            lines[child] = key.start_mark.line + 1
            _walk(value, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines)


def line_of(lines: dict[Path, int], path: Path) -> int:
    """The line of ``path``, or of its nearest ancestor present in the document."""
    path = tuple(path)
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def dotted(path: Path) -> str:
    """``("features", "event_types", 2)`` -> ``features.event_types[2]``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"
