"""YAML with positions: load admin-written YAML and validate it with pydantic, reporting
every problem at its file, line and column.

The loader is PyYAML's safe loader with the YAML 1.2 core schema for scalars,
because YAML 1.1's guesses surprise people:

* only ``true`` and ``false`` (in any case) are booleans; ``on``, ``yes``, ``no``,
  ``off``, ``y`` and ``n`` stay strings;
* integers are decimal (``010`` is ten, not eight), ``0o17`` or ``0x1F``; ``1:30``
  and ``1_000`` stay strings;
* floats are as in YAML 1.2 (``1e3`` is a float), plus ``.inf`` and ``.nan``;
* ``null``, ``~`` and an empty value are null; dates (``2026-03-25``) and
  timestamps are kept, as PyYAML reads them;
* a mapping that names a key twice is an error (PyYAML keeps the last silently);
  keys merged in with ``<<`` may be overridden, as YAML intends.

``parse`` returns the data with a ``PositionMap``; ``validate`` runs a pydantic
model over the data and turns every validation error into a ``RuleError`` located
at the closest node the YAML has (see ``rules.explain`` for the wording).

Validators can sharpen the location through their error's context:

* ``at``: a tuple of keys/indices appended to the error's location (for checks
  made on a whole list that blame one item);
* ``text_line`` / ``text_column``: a 1-based position inside a string value,
  which becomes a file position when the string is written verbatim (a plain or
  quoted scalar on one line, or a literal ``|`` block).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rules.errors import PathElement, RuleError, RulesInvalid, json_pointer
from rules.explain import explain

M = TypeVar("M", bound=BaseModel)
Path = tuple[Hashable, ...]
"""Keys and indices from the document down to a node; YAML keys need not be strings."""

MAX_CHARACTERS = 1_000_000
"""A longer document is refused (``too_large``) before it is parsed."""

MAX_STRING = 10_000
"""The longest string value (or key) accepted, in characters; expressions have their
own, shorter limit (``rules.celcheck.MAX_EXPRESSION_LENGTH``)."""

MAX_NODES = 100_000
"""More nodes than this (counting every use of an alias) is refused as ``too_complex``:
no rules file comes near it, and alias bombs expand exponentially."""

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_REPLACED = {_BOOL, _INT, _FLOAT, "tag:yaml.org,2002:value"}


class _Yaml12:
    """What both loaders add to PyYAML's safe loading: YAML 1.2 core scalars and a record
    of duplicate keys (``_construct_mapping``)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)  # type: ignore[call-arg]
        self.duplicates: list[tuple[Any, yaml.Mark, yaml.Mark]] = []

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        return _construct_mapping(self, node, deep, super().construct_mapping)  # type: ignore[misc]

    def construct_yaml12_bool(self, node: ScalarNode) -> bool:
        return _bool(str(self.construct_scalar(node)))  # type: ignore[attr-defined]

    def construct_yaml12_int(self, node: ScalarNode) -> int:
        return _int(str(self.construct_scalar(node)))  # type: ignore[attr-defined]

    def construct_yaml12_float(self, node: ScalarNode) -> float:
        return _float(str(self.construct_scalar(node)))  # type: ignore[attr-defined]


class Loader(_Yaml12, yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core scalars and duplicate-key detection."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_CBase: Any = getattr(yaml, "CSafeLoader", None)


class FastLoader(_Yaml12, _CBase or yaml.SafeLoader):  # type: ignore[misc]
    """The same loader on libyaml's C parser: about eight times faster. Its error
    messages are terser, so a document it refuses is parsed again by ``Loader``."""


def _bool(text: str) -> bool:
    return text.lower() == "true"


def _int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _float(text: str) -> float:
    text = text.lower()
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text == ".nan":
        return float("nan")
    return float(text)


def _construct_mapping(
    loader: Any, node: MappingNode, deep: bool, base: Any
) -> dict[Hashable, Any]:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            continue  # PyYAML reports unhashable keys itself
        if key in seen:
            loader.duplicates.append((key, key_node.start_mark, seen[key]))
        else:
            seen[key] = key_node.start_mark
    result: dict[Hashable, Any] = base(node, deep=deep)
    return result


Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?i:true|false)$"), list("tTfF"))
Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
FastLoader.yaml_implicit_resolvers = Loader.yaml_implicit_resolvers
for _loader in (Loader, FastLoader):
    for _tag, _name in ((_BOOL, "bool"), (_INT, "int"), (_FLOAT, "float")):
        _loader.add_constructor(_tag, getattr(_loader, f"construct_yaml12_{_name}"))


@dataclass(frozen=True, slots=True)
class TextOrigin:
    """Where a string value's own text sits in the file, when it is written verbatim."""

    kind: Literal["inline", "block"]
    line: int
    column: int

    def locate(self, text_line: int, text_column: int) -> tuple[int, int] | None:
        """The file position of the string's ``text_line``:``text_column`` (1-based)."""
        if self.kind == "inline":
            return (self.line, self.column + text_column - 1) if text_line == 1 else None
        return self.line + text_line - 1, self.column + text_column - 1


@dataclass(frozen=True, slots=True)
class Position:
    """1-based position of a value node and, for a mapping entry, of its key."""

    line: int
    column: int
    key_line: int | None = None
    key_column: int | None = None
    text: TextOrigin | None = None


class PositionMap(Mapping[Path, Position]):
    """Positions by path (``("rules", 2, "cap", "per")``); ``()`` is the document."""

    def __init__(self, positions: dict[Path, Position]) -> None:
        self._positions = positions

    def __getitem__(self, path: Path) -> Position:
        return self._positions[path]

    def __iter__(self) -> Iterator[Path]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)

    def closest(self, path: Path) -> tuple[Path, Position | None]:
        """The position of ``path`` or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self._positions.get(path[:end])
            if found is not None:
                return path[:end], found
        return (), None


def parse(text: str, *, source: str) -> tuple[Any, PositionMap]:
    """Load one YAML document; a problem raises ``RulesInvalid``."""
    if len(text) > MAX_CHARACTERS:
        raise RulesInvalid.single(
            source=source,
            line=1,
            column=1,
            code="too_large",
            message=f"the document is {len(text):,} characters long; at most "
            f"{MAX_CHARACTERS:,} are allowed",
        )
    loader: Loader | FastLoader | None = None
    node: Node | None = None
    data: Any = None
    try:
        # libyaml first, for speed; a document it refuses is parsed again by the pure
        # Python loader, whose messages say more (and which checks every character).
        loader = FastLoader(text)
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except (yaml.YAMLError, RecursionError, ValueError, TypeError):
        if loader is not None:
            loader.dispose()
        loader = None
    if loader is None:
        loader, node, data = _parse_slowly(text, source)
    else:
        loader.dispose()
    if loader.duplicates and node is not None:
        # The later of two equal keys is the one the walk keeps, so its path can be found.
        by_key = {
            (found.key_line, found.key_column): path
            for path, found in _positions(node, text, loader, source).items()
        }
        raise RulesInvalid(
            RuleError(
                source,
                mark.line + 1,
                mark.column + 1,
                json_pointer(by_key.get((mark.line + 1, mark.column + 1), ())),
                f"duplicate key '{key}' (first given on line {first.line + 1})",
                "duplicate_key",
            )
            for key, mark, first in loader.duplicates
        )
    if node is None or data is None:
        raise RulesInvalid.single(
            source=source, line=1, column=1, code="empty_document", message="the document is empty"
        )
    return data, PositionMap(_positions(node, text, loader, source))


def _parse_slowly(text: str, source: str) -> tuple[Loader, Node | None, Any]:
    loader: Loader | None = None
    try:
        loader = Loader(text)  # the reader checks every character here
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, source) from exc
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        raise RulesInvalid.single(
            source=source,
            line=line,
            column=column,
            code="yaml_syntax",
            message=f"invalid YAML: the character {_codepoint(exc.character)} is not allowed",
        ) from exc
    except yaml.YAMLError as exc:
        raise RulesInvalid.single(
            source=source, code="yaml_syntax", message=f"invalid YAML: {exc}"
        ) from exc
    except RecursionError as exc:
        raise RulesInvalid.single(
            source=source, code="too_complex", message="the document is nested too deeply"
        ) from exc
    finally:
        if loader is not None:
            loader.dispose()
    return loader, node, data


def validate(model: type[M], text: str, *, source: str) -> M:
    """Parse ``text`` and validate it as ``model``; every problem raises in one ``RulesInvalid``.

    Before validating, lists named in the model's ``LIMITS`` (top-level key → most
    entries) and every string (``MAX_STRING``) are checked for size, so an oversized
    document is refused before any work proportional to its contents.
    """
    data, positions = parse(text, source=source)
    check_sizes(data, positions, source=source, limits=getattr(model, "LIMITS", {}))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RulesInvalid(
            locate(error, model=model, data=data, positions=positions, source=source)
            for error in exc.errors(include_url=False)
        ) from exc


def check_sizes(
    data: Any, positions: PositionMap, *, source: str, limits: Mapping[str, int]
) -> None:
    """Refuse (``too_large``) a top-level list longer than ``limits`` allows, or any
    string longer than ``MAX_STRING`` characters."""
    errors: list[RuleError] = []

    def refuse(path: Path, message: str) -> None:
        _, position = positions.closest(path)
        errors.append(
            RuleError(
                source,
                None if position is None else position.line,
                None if position is None else position.column,
                json_pointer(path),
                message,
                "too_large",
            )
        )

    if isinstance(data, Mapping):
        for key, most in limits.items():
            found = data.get(key)
            if isinstance(found, list | Mapping) and len(found) > most:
                refuse((key,), f"{key} has {len(found):,} entries; at most {most:,} are allowed")
    stack: list[tuple[Path, Any]] = [((), data)]
    while stack and len(errors) < 20:
        path, value = stack.pop()
        if isinstance(value, str) and len(value) > MAX_STRING:
            refuse(path, f"the text is {len(value):,} characters long; at most {MAX_STRING:,}")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str) and len(key) > MAX_STRING:
                    refuse(path, f"a key is {len(key):,} characters long; at most {MAX_STRING:,}")
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in enumerate(value))
    if errors:
        raise RulesInvalid(errors)


def locate(
    error: Any, *, model: type[BaseModel], data: Any, positions: PositionMap, source: str
) -> RuleError:
    """Turn one pydantic error (an ``ErrorDetails``) into a located ``RuleError``."""
    ctx: dict[str, Any] = error.get("ctx") or {}
    loc = tuple(error["loc"]) + tuple(ctx.get("at", ()))
    path = data_path(data, loc, missing=error["type"] == "missing" and not ctx)
    code, message = explain(error, loc=loc, path=path, model=model)
    found_path, position = positions.closest(path)
    line = column = None
    if position is not None:
        line, column = position.line, position.column
        on_key = code in {"extra_forbidden", "duplicate_key"} or "[key]" in loc
        if on_key and found_path == path and position.key_line is not None:
            line, column = position.key_line, position.key_column
        elif found_path == path and position.text is not None and "text_line" in ctx:
            inner = position.text.locate(int(ctx["text_line"]), int(ctx["text_column"]))
            if inner is not None:
                line, column = inner
    return RuleError(source, line, column, json_pointer(path), message, code)


def data_path(data: Any, loc: tuple[PathElement, ...], *, missing: bool = False) -> Path:
    """The part of a pydantic ``loc`` that names places in ``data``.

    Union tags and other validator labels that are not keys or indices of the data
    are dropped. A missing key is kept when ``missing`` is set and it ends ``loc``.
    """
    current = data
    path: list[Hashable] = []
    for index, element in enumerate(loc):
        if isinstance(current, Mapping):
            key = _matching_key(current, element)
            if key is not _NO_KEY:
                path.append(key)
                current = current[key]
                continue
            if missing and index == len(loc) - 1:
                path.append(element)
                break
        elif _is_index(element) and isinstance(current, list) and 0 <= element < len(current):
            path.append(element)
            current = current[element]
    return tuple(path)


_NO_KEY = object()


def _is_index(element: object) -> TypeGuard[int]:
    return isinstance(element, int) and not isinstance(element, bool)


def _matching_key(mapping: Mapping[Any, Any], element: PathElement) -> Any:
    if isinstance(element, Hashable) and element in mapping:
        return element
    for key in mapping:
        if str(key) == str(element):
            return key
    return _NO_KEY


def _syntax_error(exc: yaml.MarkedYAMLError, source: str) -> RulesInvalid:
    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context or 'cannot parse'}"
    if exc.problem and exc.context:
        message += f" ({exc.context}"
        if (
            exc.context_mark is not None
            and mark is not None
            and (exc.context_mark.line != mark.line)
        ):
            message += f" that starts on line {exc.context_mark.line + 1}"
        message += ")"
    return RulesInvalid.single(
        source=source,
        line=None if mark is None else mark.line + 1,
        column=None if mark is None else mark.column + 1,
        code="yaml_syntax",
        message=message,
    )


def _codepoint(character: object) -> str:
    code = ord(character) if isinstance(character, str) else character
    return f"U+{code:04X}" if isinstance(code, int) else repr(character)


def _line_column(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def _positions(
    root: Node, text: str, loader: Loader | FastLoader, source: str
) -> dict[Path, Position]:
    positions: dict[Path, Position] = {}
    stack: list[tuple[Path, Node, Node | None]] = [((), root, None)]
    visited = 0
    while stack:
        path, node, key_node = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            raise RulesInvalid.single(
                source=source,
                line=1,
                column=1,
                code="too_complex",
                message=f"the document has more than {MAX_NODES} values once aliases are expanded",
            )
        mark = node.start_mark
        positions[path] = Position(
            mark.line + 1,
            mark.column + 1,
            None if key_node is None else key_node.start_mark.line + 1,
            None if key_node is None else key_node.start_mark.column + 1,
            _text_origin(node, text) if isinstance(node, ScalarNode) else None,
        )
        if isinstance(node, MappingNode):
            # Pushed in reverse so that a later entry (an override of a merged key) wins.
            for child_key, child in reversed(node.value):
                key = loader.construct_object(child_key, deep=True)
                if isinstance(key, Hashable):
                    stack.append(((*path, key), child, child_key))
        elif isinstance(node, SequenceNode):
            for index, child in reversed(list(enumerate(node.value))):
                stack.append(((*path, index), child, None))
    return positions


def _text_origin(node: ScalarNode, text: str) -> TextOrigin | None:
    raw = text[node.start_mark.index : node.end_mark.index]
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    value = node.value
    if not node.style and "\n" not in raw and raw == value:
        return TextOrigin("inline", line, column)
    if node.style in ("'", '"') and "\n" not in raw and raw[1:-1] == value:
        return TextOrigin("inline", line, column + 1)
    if node.style == "|":
        content = raw.split("\n")[1:]
        filled = [row for row in content if row.strip()]
        if not filled:
            return None
        indent = len(filled[0]) - len(filled[0].lstrip(" "))
        wanted = value.rstrip("\n").split("\n")
        if len(content) >= len(wanted) and all(
            row[indent:] == want for row, want in zip(content, wanted, strict=False)
        ):
            return TextOrigin("block", line + 1, indent + 1)
    return None
