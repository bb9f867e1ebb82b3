"""CEL expressions: conditions (``when``) and computed points.

An ``Expr`` is compiled once, when the rules load, by the Rust-backed
``common-expression-language`` package (``import cel``). It reads two
variables:

* ``event``: ``id``, ``type``, ``occurred_at``, ``source``, ``actor_id``, ``attributes``;
* ``user``: ``id``, ``email``, ``name``, ``department``, ``role``, ``hire_date``,
  ``tier``, ``country``, ``timezone``, ``attributes``, ``tenure_band``.

Any other top-level name, a field that ``event`` or ``user`` does not have, a
function the engine does not provide, and an expression whose estimated cost is
over the budget are rejected at load time (``rules.celcheck``). At run time an
expression refuses to run over a list, map or string from the event or user that
is bigger than the estimate assumed (``MAX_ITEMS``, ``MAX_CHARS``).

How Python values reach CEL (``to_cel``):

* ``None`` → ``null``; ``bool``, ``int``, ``float``, ``str``, ``bytes`` as themselves;
* ``datetime`` → a CEL ``timestamp``, converted to UTC first (the library cannot
  carry ``zoneinfo`` zones); a naive datetime is taken to be UTC. Compare with
  ``timestamp("2026-03-25T00:00:00Z")`` and subtract to get a ``duration``.
  The library's ``getHours()`` and friends take no timezone argument, so they
  answer in UTC;
* ``date`` (``user.hire_date``) → its ISO text, ``"2019-04-01"``, which compares
  correctly as a string and converts with ``timestamp(user.hire_date + "T00:00:00Z")``;
* ``timedelta`` → a CEL ``duration``;
* ``Decimal`` → ``double``; ``UUID`` → its text; an ``Enum`` → its value;
* mappings → maps, and lists, tuples and sets → lists, converted all the way down.

Build an ``Activation`` once per event and pass it to every expression: the
library converts a plain dict on every call (tens of microseconds), while a
prepared activation evaluates in a microsecond or two (measured: 0.5 µs for one
comparison, 2.4 µs for four clauses, against 45 µs and more with a dict).

CEL does not coerce between ``int`` and ``double`` in arithmetic
(``event.attributes.points * 2`` fails for a double), though comparisons across
the two work. A key that is absent is an evaluation error, not ``null``: guard
optional attributes with ``has(event.attributes.amount)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import cel
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from rules.celcheck import (
    DYN,
    MAX_CHARS,
    MAX_EXPRESSION_LENGTH,
    MAX_ITEMS,
    MAX_VALUES,
    CheckError,
    Shape,
    analyze,
)

VARIABLES: frozenset[str] = frozenset({"event", "user"})
"""The top-level names an expression may use."""

_COMPILE_ERROR = re.compile(r"ERROR: <input>:(\d+):(\d+): (?:Syntax error: )?(.*)")


class ExprError(Exception):
    """An expression that failed while being evaluated, or gave a result of the wrong kind."""

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.source = source


class ExprCompileError(ValueError):
    """An expression that does not compile; ``line`` and ``column`` are 1-based, in its text."""

    def __init__(self, message: str, *, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled CEL expression. Equal and hashed by its source text.

    Usable as a pydantic field type: the YAML gives the expression as a string,
    and a compile error becomes a validation error at the expression's position.
    """

    source: str
    program: cel.Program = field(compare=False, repr=False)
    reads: frozenset[tuple[str, ...]] = field(compare=False, repr=False, default=frozenset())
    cost: int = field(compare=False, repr=False, default=0)
    result: Shape = field(compare=False, repr=False, default=DYN)

    @classmethod
    def compile(cls, source: str) -> Expr:
        """Compile and check ``source``; an ``ExprCompileError`` says where it is wrong."""
        if not source.strip():
            raise ExprCompileError("the expression is empty")
        if len(source) > MAX_EXPRESSION_LENGTH:
            # Before the library sees it: its parser recurses, and crashed the process
            # (a segmentation fault) on a chain of 20,000 selections.
            raise ExprCompileError(
                f"the expression is {len(source):,} characters long; at most "
                f"{MAX_EXPRESSION_LENGTH:,} are allowed"
            )
        try:
            program = cel.compile(source)
        except Exception as exc:  # the library raises ValueError; be safe about others
            raise _compile_error(str(exc), source) from exc
        except BaseException as exc:  # a panic inside the library (pyo3's PanicException)
            if not _is_panic(exc):
                raise
            raise ExprCompileError("invalid CEL expression: the parser gave up on it") from exc
        try:
            analysis = analyze(source)
        except CheckError as exc:
            raise ExprCompileError(exc.message, line=exc.line, column=exc.column) from exc
        return cls(source, program, analysis.reads, analysis.cost, analysis.result)

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """Evaluate against ``activation`` (``{"event": ..., "user": ...}``).

        Pass an ``Activation`` when several expressions read the same event: a plain
        mapping is converted on every call, which costs far more than evaluating.
        Any failure becomes an ``ExprError``.
        """
        try:
            if not isinstance(activation, Activation):
                activation = Activation(activation)
            for path in self.reads:
                activation.check_size(path)
            return self.program.execute(activation.context)
        except ExprError as exc:
            raise ExprError(exc.message, source=self.source) from exc
        except Exception as exc:  # the library raises many kinds; all mean "this failed"
            raise ExprError(_describe(exc), source=self.source) from exc
        except BaseException as exc:  # a panic inside the library (pyo3's PanicException)
            if not _is_panic(exc):
                raise
            raise ExprError(
                "the expression failed inside the CEL library", source=self.source
            ) from exc

    def test(self, activation: Mapping[str, Any]) -> bool:
        """Evaluate a condition; a result that is not a boolean is an ``ExprError``."""
        result = self.evaluate(activation)
        if not isinstance(result, bool):
            raise ExprError(
                f"a condition must give true or false, not {shown(result)}",
                source=self.source,
            )
        return result

    def __str__(self) -> str:
        return self.source

    def __copy__(self) -> Expr:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Expr:
        return self

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Checked already: unpickling (from a process that loaded the rules) only compiles.
        return (_restore, (self.source, self.reads, self.cost, self.result))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            validate_expr,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "description": "a CEL expression over event and user"}


def _restore(source: str, reads: frozenset[tuple[str, ...]], cost: int, result: Shape) -> Expr:
    return Expr(source, cel.compile(source), reads, cost, result)


class Activation(Mapping[str, Any]):
    """The variables of one evaluation, converted for CEL once and reused by every
    expression that reads them (build one per event and user).

    Handing the library a prepared context makes an evaluation take about half a
    microsecond instead of tens; see ``to_cel`` for how values are converted.
    A value CEL cannot hold raises ``ExprError``.
    """

    __slots__ = ("_checked", "_values", "context")

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self._checked: dict[tuple[str, ...], str | None] = {}
        self._values: dict[str, Any] = {str(k): to_cel(v) for k, v in variables.items()}
        try:
            self.context = cel.Context(self._values)
        except Exception as exc:  # conversion failures surface as ValueError, or worse
            raise ExprError(_describe(exc)) from exc

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def check_size(self, path: tuple[str, ...]) -> None:
        """Raise ``ExprError`` when the value at ``path`` holds a list or map of more than
        ``MAX_ITEMS`` entries or a string longer than ``MAX_CHARS``: the cost estimate of
        every expression assumes no more, so such a value is refused rather than run."""
        if path not in self._checked:
            value: Any = self._values
            for key in path:
                if not isinstance(value, dict) or key not in value:
                    value = None
                    break
                value = value[key]
            self._checked[path] = _oversize(value)
        problem = self._checked[path]
        if problem is not None:
            raise ExprError(f"{'.'.join(path)} {problem}")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _is_panic(exc: BaseException) -> bool:
    """pyo3 turns a Rust panic into ``PanicException``, a ``BaseException``."""
    return type(exc).__name__ == "PanicException"


def _oversize(value: Any) -> str | None:
    stack = [value]
    seen = 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return f"holds more than {MAX_VALUES:,} values in all; expressions work on at most that"
        if isinstance(item, str | bytes) and len(item) > MAX_CHARS:
            return (
                f"holds a text of {len(item):,} characters; expressions work on at most "
                f"{MAX_CHARS:,}"
            )
        if isinstance(item, list | dict):
            if len(item) > MAX_ITEMS:
                return (
                    f"holds {len(item):,} entries; expressions work on lists and maps of at "
                    f"most {MAX_ITEMS}"
                )
            stack.extend(item.values() if isinstance(item, dict) else item)
    return None


def validate_expr(value: Any) -> Expr:
    """Pydantic validator: a string becomes a compiled ``Expr``.

    A compile error is a ``PydanticCustomError`` of type ``invalid_expression``
    whose context gives ``text_line``/``text_column`` inside the expression, which
    ``rules.yamlsrc.validate`` turns into a position in the YAML file.
    """
    if isinstance(value, Expr):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "invalid_type", "expected a CEL expression as a string; quote it, e.g. 'true'"
        )
    try:
        return Expr.compile(value)
    except ExprCompileError as exc:
        raise PydanticCustomError(
            "invalid_expression",
            "{detail}",
            {"detail": exc.message, "text_line": exc.line, "text_column": exc.column},
        ) from exc


def to_cel(value: Any) -> Any:
    """Convert a Python value into one the CEL library accepts (see the module docstring)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {k if type(k) is str else to_cel(k): to_cel(v) for k, v in value.items()}
    if kind is list:
        return [to_cel(v) for v in value]
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return to_cel(value.value)
    if isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, Mapping):
        return {to_cel(k): to_cel(v) for k, v in value.items()}
    if isinstance(value, list | tuple | Set):
        return [to_cel(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    return value  # a timedelta is a CEL duration; anything else, the library refuses


_PLAIN = frozenset({type(None), bool, int, float, str, bytes})


def shown(value: Any) -> str:
    """A result with its CEL type, for messages: ``string 'x'``, ``double 2.5``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {'true' if value else 'false'}"
    return f"{cel_type(value)} {value!r}"


def cel_type(value: Any) -> str:
    """The CEL name of a result's type, for messages."""
    if value is None:
        return "null"
    names: tuple[tuple[type, str], ...] = (
        (bool, "bool"),
        (int, "int"),
        (float, "double"),
        (str, "string"),
        (bytes, "bytes"),
        (datetime, "timestamp"),
        (timedelta, "duration"),
        (list, "list"),
        (dict, "map"),
    )
    for python_type, name in names:
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def _compile_error(text: str, source: str) -> ExprCompileError:
    match = _COMPILE_ERROR.search(text)
    if match is None:
        return ExprCompileError(f"invalid CEL expression: {text}")
    line, column, detail = match.groups()
    detail = re.sub(r" expecting (?:\{.*\}|\S+)$", "", detail.strip())
    if detail.startswith("token recognition error at:"):
        detail = "unexpected character" + detail.removeprefix("token recognition error at")
    detail = re.sub(
        r"^(?:mismatched|extraneous) input '<EOF>'$", "the expression ends too soon", detail
    )
    detail = re.sub(r"^(?:mismatched|extraneous) input ", "unexpected ", detail)
    detail = re.sub(r"^missing (.*) at '<EOF>'$", r"missing \1 at the end", detail)
    # An error at the very end (often after a trailing newline) points just past the last token.
    rows = source.rstrip().split("\n")
    at = (int(line), int(column))
    end = (len(rows), len(rows[-1]) + 1)
    if at > end:
        at = end
    return ExprCompileError(f"invalid CEL expression: {detail}", line=at[0], column=at[1])


def _first_sentence(text: str) -> str:
    head, dot, _ = text.partition(". ")
    return head if dot else text.rstrip(".")


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        key = exc.args[0] if exc.args else "?"
        return f"no such key: {key}"
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    text = str(exc).strip()
    if isinstance(exc, RuntimeError) and text.startswith("Undefined variable or function"):
        return (
            "undefined variable or function"
            + _first_sentence(text).partition("Undefined variable or function")[2]
        )
    if isinstance(exc, TypeError | OverflowError | IndexError):
        return _first_sentence(text) or type(exc).__name__
    if isinstance(exc, ValueError) and "Conversion Error" in text:
        return "a value cannot be passed to CEL: " + text.rpartition(": ")[2]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_whole(value: float) -> bool:
    """True for a finite double with no fractional part."""
    return math.isfinite(value) and value.is_integer()
