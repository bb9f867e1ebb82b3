"""Static checks of a CEL expression: known fields, known functions, types, and cost.

The CEL library compiles an expression but exposes no syntax tree and no cost
limit, and it evaluates nested comprehensions in full (two nested ``map`` calls
over lists of a hundred took tens of milliseconds; four took minutes and gigabytes).
So every expression is parsed a second time (``rules.celparse``), into a small tree
of its own, and walked here once at load time to:

* refuse fields that ``event`` and ``user`` do not have (``user.departmnt``), with a
  did-you-mean, and attributes that an event type's declaration does not list;
* refuse functions the engine does not provide, and CEL features it does not allow
  (message construction, optional syntax);
* check types where they are known (a declared ``string`` attribute compared with a
  number, a condition that gives a number);
* estimate the cost of one evaluation, in units of roughly a nanosecond on this kind
  of machine, and refuse an expression over ``COST_BUDGET`` or with comprehensions
  nested deeper than ``MAX_COMPREHENSION_DEPTH``.

The estimate assumes that a list or map read from the event or the user holds at
most ``MAX_ITEMS`` entries, a string at most ``MAX_CHARS`` characters, and a value at
most ``MAX_VALUES`` values nested in it. An event
whose values break those assumptions fails the expression at run time instead of
running it (``rules.expr.Expr.evaluate``), so the bound holds for every input.

Every error carries a 1-based line and column inside the expression's text.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from rules.celparse import CheckError as CheckError
from rules.celparse import Node, Parser, error_at

MAX_ITEMS = 256
"""The most entries a list or map read from an event or user may hold for an expression."""
MAX_CHARS = 65_536
"""The longest string read from an event or user that an expression will work on."""
MAX_VALUES = 4_096
"""The most values (counting every nested one) in one value an expression reads."""
COST_BUDGET = 2_000_000
"""The most an expression may cost (about a nanosecond per unit, so about 2 ms)."""
EVENT_COST_BUDGET = 5_000_000
"""The most the expressions one event may run may cost together, per file (rules,
streaks; challenges), so that many cheap rules on one event type stay cheap too."""
MAX_COMPREHENSION_DEPTH = 2
"""``all``/``exists``/``exists_one``/``map``/``filter`` nested no deeper than this."""
MAX_EXPRESSION_LENGTH = 4_000
"""The longest expression text accepted, in characters."""
MAX_DEPTH = 100
"""The deepest syntax tree accepted (operators, selections and calls inside each other)."""

# Measured on the CEL library (bench/rules_limits.py): a node is about 20 ns;
# ``map``/``filter`` copy the result so far at every step (quadratic): about 40 ns per
# number copied, a string's length at about 8 bytes per ns, and a map or list about
# 1 µs and more; scanning text is well under a nanosecond per byte; a list literal
# costs about 200 ns per element.
_NODE = 20
_COPY = 40
_COPY_CONTAINER = 1_000
_COPY_VALUE = 300  # per value inside a copied map or list (a map of two entries: ~1.1 µs)
_LITERAL_ITEM = 200

AttrKind = Literal["string", "number", "integer", "boolean", "list", "map", "timestamp"]
ATTRIBUTE_TYPES: tuple[AttrKind, ...] = (
    "string",
    "number",
    "integer",
    "boolean",
    "list",
    "map",
    "timestamp",
)

FUNCTIONS: dict[str, tuple[int, ...]] = {
    # name: the argument counts allowed, counting a method call's receiver
    "size": (1,),
    "contains": (2,),
    "startsWith": (2,),
    "endsWith": (2,),
    "matches": (2,),
    "int": (1,),
    "uint": (1,),
    "double": (1,),
    "string": (1,),
    "bytes": (1,),
    "timestamp": (1,),
    "duration": (1,),
    "dyn": (1,),
    "type": (1,),
    "getFullYear": (1,),
    "getMonth": (1,),
    "getDayOfYear": (1,),
    "getDayOfMonth": (1,),
    "getDate": (1,),
    "getDayOfWeek": (1,),
    "getHours": (1,),
    "getMinutes": (1,),
    "getSeconds": (1,),
    "getMilliseconds": (1,),
}
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
TYPE_NAMES = frozenset(
    {
        "bool",
        "bytes",
        "double",
        "duration",
        "int",
        "list",
        "map",
        "null_type",
        "string",
        "timestamp",
        "type",
        "uint",
    }
)


# ---------------------------------------------------------------------------
# Shapes: what the checker knows about a value (its type and size bounds)


class Shape(NamedTuple):
    """A value's type (``dyn`` when unknown), an upper bound on its length (items or
    characters), its elements' shape, and for a struct its fields."""

    kind: str
    length: int = 0
    elem: Shape | None = None
    fields: Mapping[str, Shape] | None = None
    name: str = ""
    scalar: bool = False  # for "dyn": known not to be a list or map (text, a number, null)

    def item(self) -> Shape:
        return self.elem if self.elem is not None else DYN


DYN = Shape("dyn", MAX_CHARS)
BOOL = Shape("bool")
INT = Shape("int")
UINT = Shape("uint")
DOUBLE = Shape("double")
NUM = Shape("num")  # a declared "number": an int or a double
NULL = Shape("null")
TIMESTAMP = Shape("timestamp")
DURATION = Shape("duration")
TYPE = Shape("type")
SCALAR = Shape("dyn", 0, scalar=True)  # a number, timestamp or duration: nothing to scan
NUMERIC = frozenset({"int", "uint", "double", "num"})


def _string(length: int = MAX_CHARS) -> Shape:
    return Shape("string", length)


def _optional_string(length: int = MAX_CHARS) -> Shape:
    # Directory fields may be null; "dyn" lets comparisons with null pass.
    return Shape("dyn", length, scalar=True)


EVENT_FIELDS: dict[str, Shape] = {
    "id": _string(),
    "type": _string(),
    "user_id": _string(),
    "occurred_at": TIMESTAMP,
    "source": _optional_string(),
    "actor_id": _optional_string(),
    "attributes": Shape("map", MAX_ITEMS, DYN, name="event.attributes"),
}
USER_FIELDS: dict[str, Shape] = {
    "id": _string(),
    "email": _optional_string(),
    "name": _optional_string(),
    "department": _optional_string(),
    "role": _optional_string(),
    "hire_date": _optional_string(10),
    "tier": _optional_string(),
    "country": _optional_string(2),
    "timezone": _optional_string(),
    "attributes": Shape("map", MAX_ITEMS, DYN, name="user.attributes"),
    "tenure_band": _optional_string(),
}


def attribute_shape(kind: str) -> Shape:
    """The shape of a declared attribute of type ``kind`` (see ``ATTRIBUTE_TYPES``)."""
    return {
        "string": _string(),
        "timestamp": _string(64),
        "number": NUM,
        "integer": INT,
        "boolean": BOOL,
        "list": Shape("list", MAX_ITEMS, DYN),
        "map": Shape("map", MAX_ITEMS, DYN),
    }.get(kind, DYN)


def _named_shape(shape: Shape, name: str) -> Shape:
    return Shape(shape.kind, shape.length, shape.elem, shape.fields, name)


def variables(attributes: Mapping[str, str] | None = None) -> dict[str, Shape]:
    """``event`` and ``user``; with ``attributes`` (name → declared type), the event's
    attributes are a closed structure of those names."""
    event_fields = dict(EVENT_FIELDS)
    if attributes is not None:
        event_fields["attributes"] = Shape(
            "struct",
            MAX_ITEMS,
            fields={
                name: _named_shape(attribute_shape(kind), f"event.attributes.{name}")
                for name, kind in attributes.items()
            },
            name="event.attributes",
        )
    return {
        "event": Shape("struct", fields=event_fields, name="event"),
        "user": Shape("struct", fields=USER_FIELDS, name="user"),
    }


# ---------------------------------------------------------------------------
# The walk: shapes, costs and the places read


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the checker found: the result's shape, the estimated cost, and the paths the
    expression reads from ``event`` and ``user`` (``("event", "attributes", "tags")``;
    a path that ends at a map means the whole map)."""

    result: Shape
    cost: int
    reads: frozenset[tuple[str, ...]]
    depth: int


@dataclass
class _Walk:
    source: str
    roots: Mapping[str, Shape]
    reads: set[tuple[str, ...]] = field(default_factory=set)
    wholes: set[tuple[str, ...]] = field(default_factory=set)
    max_depth: int = 0

    def read_paths(self) -> frozenset[tuple[str, ...]]:
        """Whole containers used as such, and the deepest fields read."""
        leaves = {
            path
            for path in self.reads
            if not any(
                len(other) > len(path) and other[: len(path)] == path for other in self.reads
            )
        }
        return frozenset(leaves | self.wholes)

    def fail(self, node: Node, message: str) -> CheckError:
        return error_at(self.source, node.at, message)

    def walk(self, node: Node, scope: Mapping[str, Shape], depth: int) -> tuple[Shape, int]:
        kind = node.kind
        if kind == "literal":
            return _literal_shape(node), _NODE + node.size // 2
        if kind == "ident":
            return self.ident(node, scope), _NODE
        if kind == "select":
            return self.select(node, scope, depth)
        if kind == "index":
            assert node.target is not None
            target, cost = self.walk(node.target, scope, depth)
            _key, key_cost = self.walk(node.args[0], scope, depth)
            path = self.path_of(node.target)
            key_name = node.args[0].value
            if target.kind == "struct":
                if key_name is not None:
                    return self.field_of(node, target, key_name, path), cost + key_cost
                if path is not None:
                    self.wholes.add(path)
                return DYN, cost + key_cost + _NODE
            if target.kind in ("string", "int", "uint", "double", "num", "bool", "timestamp"):
                raise self.fail(node, f"{_a(target)} cannot be indexed")
            if path is not None and key_name is not None and target.kind in ("map", "dyn"):
                self.reads.add((*path, key_name))
            elif path is not None:
                self.wholes.add(path)
            return target.item(), cost + key_cost + _NODE
        if kind == "list":
            items = [self.walk(arg, scope, depth) for arg in node.args]
            elem = _join([shape for shape, _ in items])
            return (
                Shape("list", len(items), elem),
                _NODE + sum(cost for _, cost in items) + _LITERAL_ITEM * len(items),
            )
        if kind == "map":
            entries = [self.walk(arg, scope, depth) for arg in node.args]
            values = [shape for shape, _ in entries[1::2]]
            return (
                Shape("map", len(values), _join(values)),
                _NODE + sum(cost for _, cost in entries) + _LITERAL_ITEM * len(values),
            )
        if kind == "unary":
            operand, cost = self.walk(node.args[0], scope, depth)
            if node.text == "!":
                self.want_bool(node.args[0], operand, "'!'")
                return BOOL, cost + _NODE
            if operand.kind not in NUMERIC and operand.kind != "dyn":
                raise self.fail(node, f"'-' needs a number, not {_a(operand)}")
            return operand, cost + _NODE
        if kind == "binary":
            return self.binary(node, scope, depth)
        if kind == "cond":
            condition, c1 = self.walk(node.args[0], scope, depth)
            self.want_bool(node.args[0], condition, "the condition of '? :'")
            then, c2 = self.walk(node.args[1], scope, depth)
            otherwise, c3 = self.walk(node.args[2], scope, depth)
            return _join([then, otherwise]), c1 + max(c2, c3) + _NODE
        if kind == "call":
            return self.call(node, scope, depth)
        raise self.fail(node, "unsupported expression")  # pragma: no cover

    def ident(self, node: Node, scope: Mapping[str, Shape]) -> Shape:
        if node.text in scope:
            return scope[node.text]
        if node.text in self.roots:
            return self.roots[node.text]
        if node.text in TYPE_NAMES:
            return TYPE
        names = sorted({*self.roots, *scope})
        close = difflib.get_close_matches(node.text, names, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise self.fail(
            node, f"unknown name '{node.text}'{hint}; expressions can use {' and '.join(names)}"
        )

    def path_of(self, node: Node) -> tuple[str, ...] | None:
        """``("event", "attributes", "x")`` for ``event.attributes.x``; None otherwise."""
        if node.kind == "ident" and node.text in self.roots:
            return (node.text,)
        if node.kind == "select" and node.target is not None:
            base = self.path_of(node.target)
            return None if base is None else (*base, node.text)
        if node.kind == "index" and node.target is not None and node.args[0].value is not None:
            base = self.path_of(node.target)
            return None if base is None else (*base, node.args[0].value)
        return None

    def select(
        self, node: Node, scope: Mapping[str, Shape], depth: int, *, testing: bool = False
    ) -> tuple[Shape, int]:
        assert node.target is not None
        target, cost = self.walk(node.target, scope, depth)
        path = self.path_of(node.target)
        if target.kind == "struct":
            return self.field_of(node, target, node.text, path, testing=testing), cost + _NODE
        if target.kind in ("map", "dyn"):
            if path is not None:
                self.reads.add((*path, node.text))
            return target.item() if target.kind == "map" else DYN, cost + _NODE
        raise self.fail(node, f"{_a(target)} has no field '{node.text}'")

    def field_of(
        self,
        node: Node,
        target: Shape,
        name: str,
        path: tuple[str, ...] | None,
        *,
        testing: bool = False,
    ) -> Shape:
        fields = target.fields or {}
        if name not in fields:
            if testing and target.name == "event.attributes":
                # has() on an undeclared attribute: allowed (the event may carry extras).
                return DYN
            close = difflib.get_close_matches(name, sorted(fields), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            what = "declared attribute" if target.name == "event.attributes" else "field"
            known = ", ".join(sorted(fields)) or "none"
            raise self.fail(node, f"{target.name} has no {what} '{name}'{hint}; it has {known}")
        shape = fields[name]
        if path is not None:
            self.reads.add((*path, name))
        return shape

    def want_bool(self, node: Node, shape: Shape, what: str) -> None:
        if shape.kind not in ("bool", "dyn"):
            raise self.fail(node, f"{what} needs true or false, not {_a(shape)}")

    def binary(self, node: Node, scope: Mapping[str, Shape], depth: int) -> tuple[Shape, int]:
        op = node.text
        left, c1 = self.walk(node.args[0], scope, depth)
        right, c2 = self.walk(node.args[1], scope, depth)
        cost = c1 + c2 + _NODE
        if op in ("&&", "||"):
            self.want_bool(node.args[0], left, f"'{op}'")
            self.want_bool(node.args[1], right, f"'{op}'")
            return BOOL, cost
        if op == "in":
            if right.kind not in ("list", "map", "struct", "dyn"):
                raise self.fail(node, f"'in' needs a list or a map on its right, not {_a(right)}")
            path = self.path_of(node.args[1])
            if path is not None:
                self.wholes.add(path)
            length = _items(right)
            return BOOL, cost + length * (_NODE + _compare_cost(left, right.item()))
        if op in ("==", "!="):
            if not _comparable(left, right, ordered=False):
                raise self.fail(
                    node,
                    f"comparing {_a(left)} with {_a(right)} is always "
                    f"{'false' if op == '==' else 'true'}",
                )
            return BOOL, cost + _compare_cost(left, right)
        if op in ("<", "<=", ">", ">="):
            if not _comparable(left, right, ordered=True):
                raise self.fail(node, f"cannot order {_a(left)} against {_a(right)}")
            return BOOL, cost + _compare_cost(left, right)
        # Arithmetic.
        joinable = {"dyn", "string", "bytes", "list"}
        if op == "+" and "dyn" in (left.kind, right.kind) and {left.kind, right.kind} <= joinable:
            unknown, other = (left, right) if left.kind == "dyn" else (right, left)
            if other.kind == "list":
                items = _items(unknown) + other.length
                elem = _join([DYN, other.item()])
                return Shape("list", items, elem), cost + _copy_cost(elem) * items
            if other.kind in ("string", "bytes"):
                length = unknown.length + other.length
                return Shape(other.kind, length), cost + length // 2
            length = left.length + right.length  # two unknowns: texts, or lists
            return Shape("dyn", length), cost + length // 2
        if left.kind in ("string", "bytes") or right.kind in ("string", "bytes"):
            if op == "+" and (
                {left.kind, right.kind} <= {"string", "dyn"}
                or {left.kind, right.kind} <= {"bytes", "dyn"}
            ):
                length = left.length + right.length
                kind = left.kind if left.kind != "dyn" else right.kind
                return Shape(kind, length), cost + length // 2
            raise self.fail(node, f"'{op}' cannot combine {_a(left)} and {_a(right)}")
        if op == "+" and (left.kind == "list" or right.kind == "list"):
            if not {left.kind, right.kind} <= {"list", "dyn"}:
                raise self.fail(node, f"'+' cannot combine {_a(left)} and {_a(right)}")
            length = left.length + right.length
            elem = _join([left.item(), right.item()])
            return Shape("list", length, elem), cost + _copy_cost(elem) * length
        if left.kind in ("list", "map", "bool", "null", "type", "struct") or right.kind in (
            "list",
            "map",
            "bool",
            "null",
            "type",
            "struct",
        ):
            raise self.fail(node, f"'{op}' cannot combine {_a(left)} and {_a(right)}")
        if left.kind in NUMERIC and right.kind in NUMERIC:
            if "num" in (left.kind, right.kind):
                loose = left if left.kind == "num" else right
                raise self.fail(
                    node,
                    f"{_a(loose)} may be an int or a double, and CEL does not mix them in "
                    f"'{op}': convert it first, e.g. double(...) or int(...), "
                    "or declare the attribute as integer",
                )
            if left.kind != right.kind:
                raise self.fail(
                    node,
                    f"'{op}' cannot mix {_a(left)} and {_a(right)}; CEL does not "
                    f"convert between them: use int(...) or double(...)",
                )
            return (left if left.kind != "num" else right), cost
        if left.kind == "dyn" or right.kind == "dyn":
            known = left if left.kind != "dyn" else right
            if known.kind != "dyn":
                return (NUM if known.kind in NUMERIC else SCALAR), cost
            # dyn - dyn, dyn * dyn...: a number, a timestamp or a duration, never large.
            return SCALAR, cost
        return _temporal(self, node, op, left, right), cost

    def call(self, node: Node, scope: Mapping[str, Shape], depth: int) -> tuple[Shape, int]:
        name = node.text
        if node.target is not None and name in MACROS:
            return self.comprehension(node, scope, depth)
        if node.target is None and name == "has":
            if len(node.args) != 1 or node.args[0].kind != "select":
                raise self.fail(
                    node, "has() takes one field selection, e.g. has(event.attributes.amount)"
                )
            return BOOL, self.select(node.args[0], scope, depth, testing=True)[1]
        if name not in FUNCTIONS:
            known = ", ".join(sorted({*FUNCTIONS, "has", *MACROS}))
            close = difflib.get_close_matches(name, sorted(FUNCTIONS), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise self.fail(node, f"unknown function '{name}'{hint}; the functions are: {known}")
        args = ([node.target] if node.target is not None else []) + list(node.args)
        if len(args) not in FUNCTIONS[name]:
            raise self.fail(
                node, f"{name}() takes {FUNCTIONS[name][0]} argument(s), got {len(args)}"
            )
        walked = [self.walk(arg, scope, depth) for arg in args]
        cost = sum(c for _, c in walked) + _NODE
        shapes = [shape for shape, _ in walked]
        first = shapes[0]
        if name == "matches":
            if args[1].kind != "literal" or args[1].text != "string":
                raise self.fail(node, "matches() takes its pattern as a string literal")
            _want(self, args[0], first, "string", name)
            return BOOL, cost + _text_length(first) * 2 + args[1].size * 100
        if name in ("contains", "startsWith", "endsWith"):
            _want(self, args[0], first, "string", name)
            _want(self, args[1], shapes[1], "string", name)
            scan = _text_length(first) // 8 if name == "contains" else 0
            return BOOL, cost + scan + _text_length(shapes[1])
        if name == "size":
            return INT, cost + _text_length(first) // 64
        if name in ("int", "uint", "double", "string", "bytes", "timestamp", "duration"):
            if first.kind in ("list", "map", "struct"):
                raise self.fail(node, f"{name}() cannot convert {_a(first)}")
            result = {
                "int": INT,
                "uint": UINT,
                "double": DOUBLE,
                "string": _string(max(first.length, 32)),
                "bytes": Shape("bytes", max(first.length, 32)),
                "timestamp": TIMESTAMP,
                "duration": DURATION,
            }[name]
            return result, cost + _text_length(first)
        if name == "dyn":
            return DYN if first.kind != "struct" else first, cost
        if name == "type":
            return TYPE, cost
        # getFullYear() and the rest: on a timestamp (or a duration for the time parts).
        if first.kind not in ("timestamp", "duration", "dyn"):
            raise self.fail(node, f"{name}() needs a timestamp, not {_a(first)}")
        return INT, cost

    def comprehension(
        self, node: Node, scope: Mapping[str, Shape], depth: int
    ) -> tuple[Shape, int]:
        assert node.target is not None
        name = node.text
        arity = (2, 3) if name == "map" else (2,)
        if len(node.args) not in arity or node.args[0].kind != "ident":
            raise self.fail(
                node, f"{name}() takes a variable name and an expression, e.g. {name}(x, x > 0)"
            )
        if depth + 1 > MAX_COMPREHENSION_DEPTH:
            raise self.fail(
                node,
                f"comprehensions ({', '.join(sorted(MACROS))}) may be nested at most "
                f"{MAX_COMPREHENSION_DEPTH} deep",
            )
        self.max_depth = max(self.max_depth, depth + 1)
        target, cost = self.walk(node.target, scope, depth)
        if target.kind not in ("list", "map", "struct", "dyn"):
            raise self.fail(node, f"{name}() works on a list or a map, not {_a(target)}")
        path = self.path_of(node.target)
        if path is not None:
            self.wholes.add(path)
        var = node.args[0].text
        if var in self.roots:
            raise self.fail(node.args[0], f"'{var}' is taken; name the variable something else")
        length = _items(target)
        if target.kind == "list":
            item = target.item()
        elif target.kind == "dyn":
            item = DYN
        else:
            item = _string(MAX_CHARS if target.kind != "struct" else 200)  # map keys
        inner = {**scope, var: item}
        bodies = [self.walk(arg, inner, depth + 1) for arg in node.args[1:]]
        step = sum(c for _, c in bodies) + _NODE
        if name in ("all", "exists", "exists_one"):
            self.want_bool(node.args[1], bodies[0][0], f"{name}()'s condition")
        if name == "map" and len(bodies) == 2:
            self.want_bool(node.args[1], bodies[0][0], "map()'s filter")
        total = cost + length * step
        if name in ("map", "filter"):
            # The library rebuilds the result at every step, copying every element so far.
            elem = bodies[-1][0] if name == "map" else item
            total += _copy_cost(elem) * length * (length + 1) // 2
            return Shape("list", length, elem), total
        return BOOL, total


def _want(walk: _Walk, node: Node, shape: Shape, kind: str, function: str) -> None:
    if shape.kind not in (kind, "dyn"):
        raise walk.fail(node, f"{function}() needs a {kind}, not {_a(shape)}")


def _temporal(walk: _Walk, node: Node, op: str, left: Shape, right: Shape) -> Shape:
    pair = (left.kind, op, right.kind)
    results = {
        ("timestamp", "-", "timestamp"): DURATION,
        ("timestamp", "+", "duration"): TIMESTAMP,
        ("duration", "+", "timestamp"): TIMESTAMP,
        ("timestamp", "-", "duration"): TIMESTAMP,
        ("duration", "+", "duration"): DURATION,
        ("duration", "-", "duration"): DURATION,
    }
    if pair in results:
        return results[pair]
    raise walk.fail(node, f"'{op}' cannot combine {_a(left)} and {_a(right)}")


def _copy_cost(shape: Shape) -> int:
    """What copying one value of ``shape`` costs (the library's lists hold values, not
    references: a string is copied byte by byte, a map entry by entry)."""
    if shape.kind in ("string", "bytes"):
        return _COPY + shape.length // 8
    if shape.kind in ("list", "map", "struct"):
        inner = (
            _copy_cost(shape.elem) if shape.elem is not None and shape.elem is not shape else _COPY
        )
        return _COPY_CONTAINER + shape.length * inner
    if shape.kind == "dyn" and shape.scalar:
        return _COPY + shape.length // 8
    if shape.kind == "dyn":
        # Anything: a long string, or lists and maps of up to MAX_VALUES values in all.
        return max(_COPY + shape.length // 8, MAX_VALUES * _COPY_VALUE)
    return _COPY


def _items(shape: Shape) -> int:
    """How many entries a list or map may hold; for a value of unknown type, as many as
    the lists it may have been concatenated from (``MAX_ITEMS`` per ``MAX_CHARS``)."""
    if shape.kind == "dyn" and shape.scalar:
        return 0
    if shape.kind == "dyn":
        return -(-shape.length // MAX_CHARS) * MAX_ITEMS
    return shape.length


def _compare_cost(left: Shape, right: Shape) -> int:
    """Comparing two values scans text only when both may be text, up to the shorter."""
    if left.kind not in ("string", "bytes", "dyn") or right.kind not in ("string", "bytes", "dyn"):
        return 0
    return min(left.length, right.length) // 16


def _text_length(shape: Shape) -> int:
    if shape.kind in ("string", "bytes", "dyn"):
        return shape.length
    if shape.kind in ("list", "map"):
        return shape.length * 32
    return 0


def _literal_shape(node: Node) -> Shape:
    return {
        "int": INT,
        "uint": UINT,
        "double": DOUBLE,
        "bool": BOOL,
        "null": NULL,
    }.get(node.text) or Shape(node.text, node.size)


def _join(shapes: list[Shape]) -> Shape:
    """One shape that covers all of ``shapes`` (the longest, or ``dyn`` when they differ)."""
    if not shapes:
        return DYN
    kinds = {shape.kind for shape in shapes}
    length = max(shape.length for shape in shapes)
    if len(kinds) == 1:
        kind = shapes[0].kind
        if kind in ("list", "map"):
            return Shape(kind, length, _join([shape.item() for shape in shapes]))
        if kind == "struct":
            return shapes[0]
        return Shape(kind, length)
    if kinds <= NUMERIC:
        return NUM
    return Shape("dyn", max(length, *(_text_length(shape) for shape in shapes)))


_ORDERED = frozenset({"string", "bytes", "timestamp", "duration", "bool"})


def _comparable(left: Shape, right: Shape, *, ordered: bool) -> bool:
    if "dyn" in (left.kind, right.kind):
        return True
    if left.kind in NUMERIC and right.kind in NUMERIC:
        return True
    if not ordered and "null" in (left.kind, right.kind):
        return True
    if ordered and left.kind not in _ORDERED:
        return False
    if left.kind == "struct" or right.kind == "struct":
        return not ordered and left.kind == right.kind
    return left.kind == right.kind


def _a(shape: Shape) -> str:
    """``a string``, ``an int``: a shape's name with its article."""
    text = _named(shape)
    return ("an " if text[:1] in "aeio" else "a ") + text


def _named(shape: Shape) -> str:
    names = {"num": "number", "dyn": "value", "struct": "structure"}
    kind = names.get(shape.kind, shape.kind)
    return f"{kind} ({shape.name})" if shape.name else kind


def analyze(
    source: str,
    *,
    attributes: Mapping[str, str] | None = None,
    want: Literal["bool", "number"] | None = None,
) -> Analysis:
    """Check ``source`` (already compiled by the CEL library) and estimate its cost.

    ``attributes`` are the declared attributes of the event type the expression reads
    (name → one of ``ATTRIBUTE_TYPES``); without them ``event.attributes`` may hold
    anything. ``want`` is the kind of result the expression must give, where known.
    Raises ``CheckError`` at the first problem.
    """
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise CheckError(
            f"the expression is {len(source)} characters long; at most "
            f"{MAX_EXPRESSION_LENGTH} are allowed"
        )
    tree = Parser(source).parse()
    _check_depth(source, tree)
    walk = _Walk(source, variables(attributes))
    shape, cost = walk.walk(tree, {}, 0)
    if cost > COST_BUDGET:
        raise error_at(
            source,
            0,
            f"the expression may cost about {cost:,} units per event, over the budget of "
            f"{COST_BUDGET:,}: lists and maps read from an event count as {MAX_ITEMS} items "
            f"and strings as {MAX_CHARS:,} characters, map() and filter() cost the square of "
            "their list's length, and nested comprehensions multiply; simplify it",
        )
    if want is not None:
        check_result(shape, want)
    return Analysis(shape, cost, walk.read_paths(), walk.max_depth)


def _check_depth(source: str, tree: Node) -> None:
    """Refuse a syntax tree deeper than ``MAX_DEPTH`` (walked without recursion): the
    checks below, and the CEL library, recurse once per level."""
    stack: list[tuple[Node, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise error_at(
                source, node.at, f"the expression is nested more than {MAX_DEPTH} levels deep"
            )
        stack.extend((child, depth + 1) for child in node.args)
        if node.target is not None:
            stack.append((node.target, depth + 1))


def check_result(shape: Shape, want: Literal["bool", "number"]) -> None:
    """Raise ``CheckError`` (at 1:1) when a result of ``shape`` cannot be what is wanted."""
    if want == "bool" and shape.kind not in ("bool", "dyn"):
        raise CheckError(f"a condition must give true or false, but this gives {_a(shape)}")
    if want == "number" and shape.kind not in (*NUMERIC, "dyn"):
        raise CheckError(f"points must be a whole number, but this gives {_a(shape)}")
