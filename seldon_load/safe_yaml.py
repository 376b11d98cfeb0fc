"""YAML from files other people wrote: PyYAML's safe loader with bounds on nesting and aliases.

``yaml.SafeLoader`` builds no arbitrary objects, but nested anchors ("billion laughs") make a
few hundred bytes stand for billions of nodes: PyYAML shares them, and whatever walks the
result (a ``repr`` for an error message, a copy, a check) does the billions of steps. Here the
composer counts every node *as expanded*, an alias counting the whole subtree it stands for,
and stops at a budget; it refuses recursive aliases and nesting past a depth. Work and memory
are then bounded by the text's size, which the caller caps (``limits.read_capped``).
Mappings remember their 1-based line for error messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent, CollectionStartEvent, NodeEvent

MAX_NODES = 50_000  # nodes per file, aliases expanded; a Seldon Pipeline is ~100
MAX_DEPTH = 64  # nesting of sequences and mappings; a Seldon Pipeline needs ~6


class LineDict(dict):
    """A YAML mapping that remembers its 1-based line, for error messages."""

    line: int | None = None


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with mappings as ``LineDict`` and bounded composition (see the module)."""

    max_nodes = MAX_NODES
    max_depth = MAX_DEPTH

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._expanded: dict[int, int] = {}  # id(node) -> node count with aliases expanded
        self._nodes = 0  # expanded nodes composed so far, in all documents
        self._open: list[str | None] = []  # anchors of the collections being composed

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            if event.anchor in self._open:
                raise ComposerError(None, None, f"recursive alias *{_name(event.anchor)}", event.start_mark)
            node = super().compose_node(parent, index)  # the anchored node (or PyYAML's error)
            self._count(self._expanded.get(id(node), 1), event)
            return node
        if len(self._open) >= self.max_depth:
            raise ComposerError(None, None, f"nested deeper than {self.max_depth} levels", event.start_mark)
        collection = isinstance(event, CollectionStartEvent)
        if collection:
            self._open.append(event.anchor if isinstance(event, NodeEvent) else None)
        try:
            node = super().compose_node(parent, index)
        finally:
            if collection:
                self._open.pop()
        size = 1 + sum(self._expanded.get(id(c), 1) for c in _children(node))
        self._expanded[id(node)] = size
        self._count(1, event)  # children counted themselves
        return node

    def _count(self, n: int, event: Any) -> None:
        self._nodes += n
        if self._nodes > self.max_nodes:
            raise ComposerError(None, None, f"more than {self.max_nodes} YAML nodes (aliases expanded)",
                                event.start_mark)


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _name(anchor: str) -> str:
    return anchor if len(anchor) <= 40 else anchor[:40] + "..."


def _construct_map(loader: BoundedSafeLoader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    data.line = node.start_mark.line + 1
    yield data
    data.update(loader.construct_mapping(node))


BoundedSafeLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def load_all(text: str | bytes) -> list[Any]:
    """Every document of ``text``; yaml.YAMLError (ComposerError for a bound) on bad or hostile YAML."""
    return list(yaml.load_all(text, Loader=BoundedSafeLoader))  # a SafeLoader subclass
