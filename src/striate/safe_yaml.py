"""Loading YAML that someone else may have written: capped size, capped alias expansion, no recursion.

``yaml.safe_load`` builds no objects but still trusts the document's shape: a 1 kB "billion laughs"
file (anchors that alias anchors) expands to a structure whose traversal or repr takes gigabytes,
and an anchor aliased inside itself builds a cyclic list that recursing code turns into a
RecursionError. Every YAML striate reads goes through :func:`loads`, which refuses, with one
ConfigError, an input over ``max_bytes``, a document over ``max_nodes`` nodes once every alias is
counted as the nodes it stands for, nesting deeper than ``max_depth``, and recursive aliases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from striate.errors import ConfigError

MAX_BYTES = 8 * 1024 * 1024  # configs and model specs are kilobytes; this is far above any real one
MAX_NODES = 100_000  # scalars + collections after alias expansion
MAX_DEPTH = 100  # the composer recurses about three frames per level; Python's limit is 1000 frames


class _Refused(Exception):
    """Raised inside the loader; turned into a ConfigError naming the source."""


class _CountingLoader(yaml.SafeLoader):
    """A SafeLoader that charges every node, and every alias by the size of what it stands for."""

    def __init__(self, stream: str, max_nodes: int, max_depth: int) -> None:
        super().__init__(stream)
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.nodes = 0
        self.depth = 0
        self.anchor_sizes: dict[str, int] = {}
        self.open_anchors: set[str] = set()

    def _charge(self, count: int) -> None:
        self.nodes += count
        if self.nodes > self.max_nodes:
            raise _Refused(f"it expands to more than {self.max_nodes:,} nodes (aliases counted as what they repeat)")

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            anchor = self.peek_event().anchor
            if anchor in self.open_anchors:
                raise _Refused(f"alias *{anchor} refers to the collection that contains it (a recursive alias)")
            self._charge(self.anchor_sizes.get(anchor, 1))
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > self.max_depth:
            raise _Refused(f"it nests deeper than {self.max_depth} levels")
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        before = self.nodes
        if anchor is not None:
            self.open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            if anchor is not None:
                self.open_anchors.discard(anchor)
            self.depth -= 1
        if anchor is not None:
            self.anchor_sizes[anchor] = self.nodes - before
        return node

    def compose_scalar_node(self, anchor: Any) -> Any:
        self._charge(1)
        return super().compose_scalar_node(anchor)

    def compose_sequence_node(self, anchor: Any) -> Any:
        self._charge(1)
        return super().compose_sequence_node(anchor)

    def compose_mapping_node(self, anchor: Any) -> Any:
        self._charge(1)
        return super().compose_mapping_node(anchor)


def loads(text: str | bytes, source: str = "<string>", *, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES,
          max_depth: int = MAX_DEPTH) -> Any:
    """Parse one YAML document like ``yaml.safe_load``, within the size, alias and depth limits (ConfigError)."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > max_bytes:
        raise ConfigError(f"{source} is {size:,} bytes, over the {max_bytes:,}-byte limit for a YAML file",
                          "split it, or check that it is the file you meant")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                              "save it as UTF-8") from None
    loader = None
    try:
        loader = _CountingLoader(text, max_nodes, max_depth)  # the reader refuses control characters here
        return loader.get_single_data()
    except _Refused as exc:
        raise ConfigError(f"refusing {source}: {exc}", "write the values out plainly; "
                          "anchors and aliases may only repeat small blocks") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}".splitlines()[0],
                          "fix the syntax at the line named") from None
    except RecursionError:  # a last line of defence; the depth cap should come first
        raise ConfigError(f"refusing {source}: it nests too deeply", "flatten the document") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_path(path: Path, what: str = "file", *, max_bytes: int = MAX_BYTES, **limits: int) -> Any:
    """Read and parse a YAML file within the limits, reading no more than ``max_bytes`` + 1 bytes."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}", "check the path") from None
    return loads(data, f"{what} {path}", max_bytes=max_bytes, **limits)
