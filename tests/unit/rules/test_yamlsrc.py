"""YAML loading: 1.2 scalars, duplicate keys, syntax errors and positions."""

from __future__ import annotations

from datetime import date
from textwrap import dedent
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from rules import RuleError, RulesInvalid
from rules.yamlsrc import parse, validate


def load(text: str) -> Any:
    return parse(text, source="t.yaml")[0]


def failure(text: str) -> RulesInvalid:
    with pytest.raises(RulesInvalid) as info:
        parse(text, source="t.yaml")
    return info.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # YAML 1.1 booleans stay strings.
        ("on", "on"),
        ("off", "off"),
        ("yes", "yes"),
        ("no", "no"),
        ("y", "y"),
        ("n", "n"),
        ("Yes", "Yes"),
        ("ON", "ON"),
        ("NO", "NO"),
        # Only true and false, in any case, are booleans.
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("tRuE", True),
        ("false", False),
        ("False", False),
        # YAML 1.2 core integers and floats.
        ("10", 10),
        ("-3", -3),
        ("010", 10),
        ("0o17", 15),
        ("0x1F", 31),
        ("1:30", "1:30"),
        ("1_000", "1_000"),
        ("2.5", 2.5),
        ("1e3", 1000.0),
        ("-.inf", float("-inf")),
        # Nulls, dates and strings.
        ("~", None),
        ("null", None),
        ("2026-03-25", date(2026, 3, 25)),
        ("P12M", "P12M"),
        ("=", "="),
        ("'true'", "true"),
    ],
)
def test_scalars_follow_yaml_1_2(text: str, expected: object) -> None:
    value = load(f"value: {text}\n")["value"]
    assert value == expected
    assert type(value) is type(expected)


def test_yaml_1_1_boolean_keys_stay_strings() -> None:
    assert load("on: push\nyes: 1\nno: 2\n") == {"on": "push", "yes": 1, "no": 2}


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("a: 1\nb: [1, 2\n", 3, 1, "expected ',' or ']'"),
        ("a: 1\n  b: 2\n", 2, 4, "mapping values are not allowed here"),
        ("a:\n\tb: 1\n", 2, 1, "found character '\\t' that cannot start any token"),
        ("a: 'unterminated\n", 2, 1, "found unexpected end of stream"),
        ("a: 1\n- b\n", 2, 1, "expected <block end>, but found '-'"),
        ("a: *missing\n", 1, 4, "found undefined alias 'missing'"),
        ("a: !custom 1\n", 1, 4, "could not determine a constructor for the tag '!custom'"),
        ("a: 1\n---\nb: 2\n", 2, 1, "expected a single document in the stream"),
        ("a: 1\nb: \x07\n", 2, 4, "the character U+0007 is not allowed"),
    ],
)
def test_syntax_errors_give_line_and_column(
    text: str, line: int, column: int, fragment: str
) -> None:
    [error] = failure(text).errors
    assert (error.line, error.column, error.code) == (line, column, "yaml_syntax")
    assert fragment in error.message
    assert error.message.startswith("invalid YAML: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\na: 2\n", [(2, 1, "/a", "duplicate key 'a' (first given on line 1)")]),
        (
            "rules:\n  - id: x\n    points: 1\n    points: 2\n",
            [(4, 5, "/rules/0/points", "duplicate key 'points' (first given on line 3)")],
        ),
        (
            "m: {x: 1, y: 2, x: 3}\n",
            [(1, 17, "/m/x", "duplicate key 'x' (first given on line 1)")],
        ),
        (
            "a: 1\nb: 2\na: 3\nb: 4\n",
            [
                (3, 1, "/a", "duplicate key 'a' (first given on line 1)"),
                (4, 1, "/b", "duplicate key 'b' (first given on line 2)"),
            ],
        ),
        ("1: a\n'1': b\n", []),  # an integer key and a string key differ
    ],
)
def test_duplicate_keys_are_errors(text: str, expected: list[tuple[int, int, str, str]]) -> None:
    if not expected:
        load(text)
        return
    errors = failure(text).errors
    assert [(e.line, e.column, e.path, e.message) for e in errors] == expected
    assert {e.code for e in errors} == {"duplicate_key"}


def test_the_global_safe_loader_is_untouched() -> None:
    assert yaml.safe_load("a: on\nb: 010\n") == {"a": True, "b": 8}


def test_merge_keys_may_be_overridden() -> None:
    text = "base: &base {per: day, max: 5}\ncap:\n  <<: *base\n  max: 7\n"
    assert load(text)["cap"] == {"per": "day", "max": 7}


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_document_is_an_error(text: str) -> None:
    [error] = failure(text).errors
    assert (error.line, error.column, error.code) == (1, 1, "empty_document")
    assert error.message == "the document is empty"


def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 8):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    [error] = failure("\n".join(lines) + "\n").errors
    assert error.code == "too_complex"


def test_positions_of_values_and_keys() -> None:
    text = dedent(
        """\
        version: 1
        rules:
          - id: a
            cap: {per: day, max: 5}
          - id: b
            cap:
              per: week
        """
    )
    _, positions = parse(text, source="t.yaml")
    cases: dict[tuple[object, ...], tuple[int, int, int | None, int | None]] = {
        (): (1, 1, None, None),
        ("version",): (1, 10, 1, 1),
        ("rules", 0): (3, 5, None, None),
        ("rules", 0, "cap", "per"): (4, 16, 4, 11),
        ("rules", 0, "cap", "max"): (4, 26, 4, 21),
        ("rules", 1, "cap", "per"): (7, 12, 7, 7),
    }
    for path, expected in cases.items():
        found = positions[path]
        assert (found.line, found.column, found.key_line, found.key_column) == expected, path
    assert positions.closest(("rules", 1, "cap", "max")) == (
        ("rules", 1, "cap"),
        positions[("rules", 1, "cap")],
    )


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    size: int
    colour: str = "red"


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    items: list[Inner] = []
    tags: dict[str, Inner] = {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: x\nnmae: y\n",
            [(2, 1, "/nmae", "extra_forbidden", "unknown key 'nmae' (did you mean 'name'?)")],
        ),
        (
            "name: x\nitems:\n  - size: 1\n    color: blue\n",
            [
                (
                    4,
                    5,
                    "/items/0/color",
                    "extra_forbidden",
                    "unknown key 'color' (did you mean 'colour'?)",
                )
            ],
        ),
        (
            "name: x\nitems: [{size: 1, weight: 2}]\n",
            [
                (
                    2,
                    19,
                    "/items/0/weight",
                    "extra_forbidden",
                    "unknown key 'weight'; expected one of: size, colour",
                )
            ],
        ),
        (
            "name: x\ntags: {a: {sise: 1}}\n",
            [
                (2, 11, "/tags/a/size", "missing", "missing required key 'size'"),
                (
                    2,
                    12,
                    "/tags/a/sise",
                    "extra_forbidden",
                    "unknown key 'sise' (did you mean 'size'?)",
                ),
            ],
        ),
        ("name: 5\n", [(1, 7, "/name", "invalid_type", "expected a string, got 5")]),
        (
            "name: x\nitems: [{size: five}]\n",
            [(2, 16, "/items/0/size", "invalid_type", "expected an integer, got 'five'")],
        ),
        (
            "name: x\nitems: {size: 1}\n",
            [(2, 8, "/items", "invalid_type", "expected a list, got a mapping")],
        ),
        ("- name\n", [(1, 1, "", "invalid_type", "expected a mapping, got a list")]),
        ("items: []\n", [(1, 1, "/name", "missing", "missing required key 'name'")]),
    ],
)
def test_validate_locates_pydantic_errors(
    text: str, expected: list[tuple[int, int, str, str, str]]
) -> None:
    with pytest.raises(RulesInvalid) as info:
        validate(Outer, text, source="t.yaml")
    assert [(e.line, e.column, e.path, e.code, e.message) for e in info.value.errors] == expected


def test_validate_returns_the_model() -> None:
    outer = validate(Outer, "name: x\nitems: [{size: 2}]\n", source="t.yaml")
    assert outer == Outer(name="x", items=[Inner(size=2)])


def test_rule_error_renders_and_serialises() -> None:
    error = RuleError("rules.yaml", 12, 5, "/rules/2/cap/per", "per must be one of day", "x")
    assert str(error) == "rules.yaml:12:5: /rules/2/cap/per: per must be one of day"
    assert error.to_dict() == {
        "source": "rules.yaml",
        "line": 12,
        "column": 5,
        "pointer": "/rules/2/cap/per",
        "message": "per must be one of day",
        "code": "x",
    }
    assert str(RuleError("r.yaml", None, None, "", "cannot read", "file_error")) == (
        "r.yaml: cannot read"
    )


def test_rules_invalid_lists_errors_in_file_order() -> None:
    late = RuleError("r.yaml", 9, 1, "/b", "second", "invalid_value")
    early = RuleError("r.yaml", 2, 3, "/a", "first", "invalid_value")
    exc = RulesInvalid([late, early])
    assert exc.errors == [early, late]
    assert str(exc) == "r.yaml:2:3: /a: first\nr.yaml:9:1: /b: second"
