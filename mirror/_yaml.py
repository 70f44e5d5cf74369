"""YAML text to plain values, remembering the line of every key path.

``yaml.safe_load`` forgets where things were; composing the node tree and building
the values here keeps the marks, refuses duplicate keys (PyYAML lets the last one
win) and bounds what a few lines of aliases can expand to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from ._exceptions import ManifestError
from ._validate import KeyPath, format_path

__all__ = ["MAX_DEPTH", "MAX_VALUES", "NodeReader", "one_line"]

_YAML_MAP: Final = "tag:yaml.org,2002:map"
_YAML_SEQ: Final = "tag:yaml.org,2002:seq"
_YAML_MERGE: Final = "tag:yaml.org,2002:merge"
#: A manifest names sources and their accessions: tens of thousands of values at most.
#: Aliases can make a few lines stand for billions ("billion laughs"): stop counting here.
MAX_VALUES: Final = 100_000
#: Far deeper than any manifest, and shallow enough that no reader recurses out of stack.
MAX_DEPTH: Final = 64


class NodeReader:
    """Turns YAML text into plain values, remembering the line of every key path.

    ``yaml.safe_load`` forgets where things were; composing the node tree and
    building the values ourselves keeps the marks, and lets us refuse duplicate keys
    (which PyYAML silently lets the last one win).
    """

    def __init__(
        self, file: str, *, top_keys: Callable[[str], str | None] = lambda key: None
    ) -> None:
        self.file = file
        #: Key path -> 1-based line: the key's line for a mapping entry, the item's
        #: line for a list item.
        self.lines: dict[KeyPath, int] = {(): 1}
        #: Key path -> the text of a plain scalar as written (before YAML 1.1 typing).
        self.raw: dict[KeyPath, str] = {}
        self._constructor = SafeConstructor()
        self._open: set[int] = set()
        self._top_keys = top_keys
        self._values = 0

    def read(self, text: str) -> object:
        try:
            self._check_depth(text)
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            raise self._yaml_error(exc, ()) from exc
        except yaml.YAMLError as exc:
            raise self._reader_error(exc, text) from exc
        if root is None:
            return None
        if isinstance(root, MappingNode):
            # A bad top-level key is reported before any value under it is read.
            for key_node, _ in root.value:
                if isinstance(key_node, ScalarNode) and key_node.tag != _YAML_MERGE:
                    message = self._top_keys(str(key_node.value))
                    if message is not None:
                        raise self._error((str(key_node.value),), _line(key_node), message)
        return self._value(root, ())

    def _check_depth(self, text: str) -> None:
        """Refuse nesting deeper than :data:`MAX_DEPTH` before composing (which recurses).

        The parser is a state machine, not recursive: its events are safe to walk.
        """
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark is not None else None
                    raise ManifestError(
                        f"nested more than {MAX_DEPTH} levels deep; a manifest needs a few",
                        file=self.file,
                        line=line,
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1

    def _value(self, node: Node, path: KeyPath) -> object:
        self._values += 1
        if self._values > MAX_VALUES:
            raise self._error(
                path,
                _line(node),
                f"the manifest stands for more than {MAX_VALUES:,} values "
                "(YAML aliases expanding without end?); refusing to read further",
            )
        if isinstance(node, ScalarNode):
            try:
                value: object = self._constructor.construct_object(node)
            except yaml.MarkedYAMLError as exc:
                if "could not determine a constructor" in (exc.problem or ""):
                    message = f"unsupported YAML tag {node.tag!r}"
                    raise self._error(path, _line(node), message) from exc
                raise self._yaml_error(exc, path) from exc
            if node.style is None and not isinstance(value, str):
                self.raw[path] = str(node.value)
            return value
        if id(node) in self._open:
            raise self._error(path, _line(node), "a YAML alias refers to itself")
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode) and node.tag == _YAML_SEQ:
                return self._sequence(node, path)
            if isinstance(node, MappingNode) and node.tag == _YAML_MAP:
                return self._mapping(node, path)
            raise self._error(path, _line(node), f"unsupported YAML tag {node.tag!r}")
        finally:
            self._open.discard(id(node))

    def _sequence(self, node: SequenceNode, path: KeyPath) -> list[object]:
        items: list[object] = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            self.lines[child] = _line(item)
            items.append(self._value(item, child))
        return items

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict[str, object]:
        first_seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _YAML_MERGE:
                continue
            name = self._key(key_node, path)
            if name in first_seen:
                raise self._error(
                    (*path, name),
                    _line(key_node),
                    f"duplicate key (first given at line {first_seen[name]})",
                )
            first_seen[name] = _line(key_node)
        # ``<<: *anchor`` merges are YAML's way to share settings; let PyYAML expand
        # them (explicit keys win), then read the result like any other mapping.
        try:
            self._constructor.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            raise self._yaml_error(exc, path) from exc
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            name = self._key(key_node, path)
            child = (*path, name)
            self.lines[child] = _line(key_node)
            out[name] = self._value(value_node, child)
        return out

    def _key(self, node: Node, path: KeyPath) -> str:
        if not isinstance(node, ScalarNode):
            raise self._error(path, _line(node), "a mapping key must be a plain name")
        # Keys are names: take them as written, so ``1:`` or ``yes:`` are not retyped.
        return str(node.value)

    def _error(self, path: KeyPath, line: int, message: str) -> ManifestError:
        return ManifestError(message, file=self.file, line=line, key=format_path(path))

    def _yaml_error(self, exc: yaml.MarkedYAMLError, path: KeyPath) -> ManifestError:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        parts = []
        if exc.context:
            context = exc.context
            ctx_mark = exc.context_mark
            if context.startswith("while ") and ctx_mark is not None and ctx_mark.line + 1 != line:
                context += f" at line {ctx_mark.line + 1}"
            parts.append(context)
        if exc.problem:
            parts.append(exc.problem)
        message = one_line(", ".join(parts) or "unreadable YAML")
        if path:
            return self._error(path, line, f"invalid value: {message}")
        return ManifestError(f"invalid YAML: {message}", file=self.file, line=line)

    def _reader_error(self, exc: yaml.YAMLError, text: str) -> ManifestError:
        # ReaderError (e.g. a control character) carries a character offset, no mark.
        if not isinstance(exc, ReaderError):
            return ManifestError(f"invalid YAML: {one_line(str(exc))}", file=self.file, line=1)
        position, reason, character = exc.position, exc.reason, exc.character
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else 1
        if isinstance(reason, str) and isinstance(character, int | str):
            code = ord(character) if isinstance(character, str) else character
            message = f"{reason} (character {code:#04x})"
        else:
            message = str(exc)
        return ManifestError(f"invalid YAML: {one_line(message)}", file=self.file, line=line)


def _line(node: Node) -> int:
    mark = node.start_mark
    return mark.line + 1 if mark is not None else 1


def one_line(text: str) -> str:
    return " ".join(text.split())
