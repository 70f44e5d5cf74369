"""A small parser for the Portal API ``query=`` language: field=value terms with AND/OR/NOT."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

__all__ = ["Node", "QueryError", "accession_terms", "matches", "parse"]

# Fields whose equality terms can be answered from the catalog's accession index
# instead of a scan: value → lookup kind.
_ACCESSION_FIELDS: Mapping[str, str] = {
    "run_accession": "run",
    "experiment_accession": "experiment",
    "sample_accession": "sample",
    "secondary_sample_accession": "sample",
    "study_accession": "study",
    "secondary_study_accession": "study",
    "analysis_accession": "analysis",
}
# tax_eq(N) / tax_tree(N): the emulator has no taxonomy tree, so both compare tax_id.
_FUNCTIONS = frozenset({"tax_eq", "tax_tree"})
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>\()|(?P<close>\))
        |(?P<op>!=|=)
        |"(?P<quoted>[^"]*)"
        |(?P<word>[^\s()=!"]+)
    )""",
    re.VERBOSE,
)


class QueryError(ValueError):
    """The query cannot be parsed or names an unknown field; the portal answers 400."""


@dataclass(frozen=True, slots=True)
class Term:
    field: str
    value: str
    negate: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class Both:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Either:
    items: tuple[Node, ...]


Node = Term | Not | Both | Either


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if found is None or found.end() == pos:
            raise QueryError(f"Invalid query: cannot parse at {text[pos:]!r}")
        kind = found.lastgroup
        assert kind is not None
        tokens.append((kind, found[kind]))
        pos = found.end()
    return tokens


class _Parser:
    def __init__(self, text: str, known: Callable[[str], bool]) -> None:
        self._tokens = _tokens(text)
        self._pos = 0
        self._known = known

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _take(self, kind: str) -> str:
        token = self._peek()
        if token is None or token[0] != kind:
            raise QueryError(f"Invalid query: expected {kind} at token {self._pos + 1}")
        self._pos += 1
        return token[1]

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token[0] == "word" and token[1].upper() == word:
            self._pos += 1
            return True
        return False

    def parse(self) -> Node:
        node = self._either()
        extra = self._peek()
        if extra is not None:
            raise QueryError(f"Invalid query: unexpected {extra[1]!r}")
        return node

    # OR binds looser than AND, as in ENA's advanced search.
    def _either(self) -> Node:
        items = [self._both()]
        while self._keyword("OR"):
            items.append(self._both())
        return items[0] if len(items) == 1 else Either(tuple(items))

    def _both(self) -> Node:
        items = [self._unary()]
        while self._keyword("AND"):
            items.append(self._unary())
        return items[0] if len(items) == 1 else Both(tuple(items))

    def _unary(self) -> Node:
        if self._keyword("NOT"):
            return Not(self._unary())
        token = self._peek()
        if token is not None and token[0] == "open":
            self._pos += 1
            node = self._either()
            self._take("close")
            return node
        name = self._take("word")
        token = self._peek()
        if name.lower() in _FUNCTIONS and token is not None and token[0] == "open":
            self._pos += 1
            value = self._value()
            self._take("close")
            return Term("tax_id", value)
        if not self._known(name):
            raise QueryError(f"Invalid query: unknown search field {name}")
        negate = self._take("op") == "!="
        return Term(name, self._value(), negate)

    def _value(self) -> str:
        token = self._peek()
        if token is None or token[0] not in ("quoted", "word"):
            raise QueryError(f"Invalid query: expected a value at token {self._pos + 1}")
        self._pos += 1
        return token[1]


def parse(text: str, known: Callable[[str], bool]) -> Node:
    """Parse ``text``; ``known(field)`` says which field names may be searched."""
    if not text.strip():
        raise QueryError("Invalid query: empty")
    tokens = _tokens(text)
    if len(tokens) == 1 and tokens[0][0] == "quoted":
        # The whole query in one pair of quotes, as fastq-dl sends it
        # (query="(study_accession=X OR secondary_study_accession=X)"): ENA reads
        # the quoted text as the query.
        return parse(tokens[0][1], known)
    return _Parser(text, known).parse()


def _equal(actual: str, wanted: str) -> bool:
    if "*" in wanted:
        return fnmatchcase(actual.casefold(), wanted.casefold())
    return actual.casefold() == wanted.casefold()


def matches(node: Node, get: Callable[[str], str]) -> bool:
    """Evaluate ``node`` for one record; ``get(field)`` returns the record's value."""
    if isinstance(node, Term):
        return _equal(get(node.field), node.value) != node.negate
    if isinstance(node, Not):
        return not matches(node.item, get)
    if isinstance(node, Both):
        return all(matches(item, get) for item in node.items)
    return any(matches(item, get) for item in node.items)


def accession_terms(node: Node) -> list[tuple[str, str]] | None:
    """(accession, kind) pairs that contain every match of ``node``, or None to scan.

    ``study_accession=X OR secondary_study_accession=X`` needs only X's runs; an AND
    needs only one indexable side. The full predicate is still applied afterwards.
    """
    if isinstance(node, Term):
        kind = _ACCESSION_FIELDS.get(node.field)
        if kind is None or node.negate or "*" in node.value:
            return None
        return [(node.value, kind)]
    if isinstance(node, Either):
        pairs: list[tuple[str, str]] = []
        for item in node.items:
            found = accession_terms(item)
            if found is None:
                return None
            pairs.extend(found)
        return pairs
    if isinstance(node, Both):
        for item in node.items:
            found = accession_terms(item)
            if found is not None:
                return found
    return None
