"""CEL's grammar, parsed into a small syntax tree with positions (``rules.celcheck``
walks it). The CEL library compiles expressions but exposes no tree, so this module
parses them a second time, after the library has accepted them.

The grammar is the CEL specification's "Syntax" section. Optional syntax (``.?``,
``[?``) and message construction (``Type{...}``) are refused: the engine does not use
them. Nothing here recurses once per token of a chain (selections, operators, signs),
so a long expression cannot exhaust the stack.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class CheckError(ValueError):
    """An expression refused by a static check; ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, *, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


_NUMBERS = frozenset({"int", "uint", "double"})


class Token(NamedTuple):
    kind: str  # "int", "uint", "double", "string", "bytes", "ident", "op", "end"
    text: str
    at: int


_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>[rR]?[bB]?[rR]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"
        |'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%!<>?:.,\[\](){}])
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    while at < len(source):
        match = _TOKEN.match(source, at)
        if match is None:
            raise error_at(source, at, f"unexpected character {source[at]!r}")
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "string":
            prefix = text[: len(text) - len(text.lstrip("rRbB"))]
            kind = "bytes" if "b" in prefix.lower() else "string"
        elif kind == "number":
            lower = text.lower()
            if lower.endswith("u"):
                kind = "uint"
            elif not lower.startswith("0x") and ("." in lower or "e" in lower):
                kind = "double"
            else:
                kind = "int"
        if kind != "space":
            tokens.append(Token(kind, text, at))
        at = match.end()
    tokens.append(Token("end", "", len(source)))
    return tokens


class Node(NamedTuple):
    kind: str  # literal, ident, select, index, call, list, map, unary, binary, cond
    at: int
    text: str = ""  # literal kind, identifier, field, function or operator
    args: tuple[Node, ...] = ()
    target: Node | None = None  # a method call's receiver, a selection's operand
    size: int = 0  # a literal's length in characters
    value: str | None = None  # a plain string literal's text, for attribute keys


class Parser:
    """Recursive descent over CEL's grammar (the CEL specification's "Syntax" section)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.index = 0
        self.depth = 0

    def parse(self) -> Node:
        node = self.expr()
        token = self.peek()
        if token.kind != "end":
            raise error_at(self.source, token.at, f"unexpected {token.text!r}")
        return node

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, text: str) -> Token | None:
        token = self.peek()
        if token.kind == "op" and token.text == text:
            self.index += 1
            return token
        return None

    def expect(self, text: str) -> Token:
        token = self.accept(text)
        if token is None:
            found = self.peek()
            raise error_at(
                self.source, found.at, f"expected {text!r}, found {found.text or 'the end'!r}"
            )
        return token

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > 64:
            raise error_at(self.source, self.peek().at, "the expression is nested too deeply")
        condition = self.binary(0)
        question = self.accept("?")
        if question is not None:
            then = self.binary(0)
            self.expect(":")
            otherwise = self.expr()
            condition = Node("cond", question.at, "?:", (condition, then, otherwise))
        self.depth -= 1
        return condition

    _LEVELS: tuple[frozenset[str], ...] = (
        frozenset({"||"}),
        frozenset({"&&"}),
        frozenset({"==", "!=", "<", "<=", ">", ">=", "in"}),
        frozenset({"+", "-"}),
        frozenset({"*", "/", "%"}),
    )

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            token = self.peek()
            is_op = token.kind == "op" or (token.kind == "ident" and token.text == "in")
            if not is_op or token.text not in self._LEVELS[level]:
                return left
            self.take()
            right = self.binary(level + 1)
            left = Node("binary", token.at, token.text, (left, right))

    def unary(self) -> Node:
        signs: list[Token] = []
        while (token := self.peek()).kind == "op" and token.text in ("!", "-"):
            signs.append(self.take())
        node = self.member()
        for token in reversed(signs):
            if not (token.text == "-" and node.kind == "literal" and node.text in _NUMBERS):
                node = Node("unary", token.at, token.text, (node,))
        return node

    def member(self) -> Node:
        node = self.primary()
        while True:
            dot = self.accept(".")
            if dot is not None:
                if self.accept("?") is not None:
                    raise error_at(self.source, dot.at, "optional selection (.?) is not supported")
                name = self.take()
                if name.kind != "ident":
                    raise error_at(self.source, name.at, "expected a field or method name")
                if self.accept("(") is not None:
                    node = Node("call", name.at, name.text, self.arguments(")"), target=node)
                else:
                    node = Node("select", name.at, name.text, target=node)
                continue
            bracket = self.accept("[")
            if bracket is not None:
                if self.accept("?") is not None:
                    raise error_at(self.source, bracket.at, "optional index ([?) is not supported")
                index = self.expr()
                self.expect("]")
                node = Node("index", bracket.at, "[]", (index,), target=node)
                continue
            if node.kind in ("ident", "select") and self.peek().text == "{":
                raise error_at(
                    self.source, node.at, "building messages (Type{field: ...}) is not supported"
                )
            return node

    def arguments(self, close: str) -> tuple[Node, ...]:
        args: list[Node] = []
        if self.accept(close) is not None:
            return ()
        while True:
            args.append(self.expr())
            if self.accept(close) is not None:
                return tuple(args)
            self.expect(",")
            if self.accept(close) is not None:
                return tuple(args)

    def primary(self) -> Node:
        token = self.take()
        if token.kind in ("int", "uint", "double"):
            return Node("literal", token.at, token.kind)
        if token.kind in ("string", "bytes"):
            body = token.text.lstrip("rRbB")
            quote = 3 if body[:3] in ("'''", '"""') else 1
            inner = body[quote:-quote]
            plain = inner if "\\" not in inner else None
            return Node("literal", token.at, token.kind, size=len(inner), value=plain)
        if token.kind == "ident":
            if token.text in ("true", "false"):
                return Node("literal", token.at, "bool")
            if token.text == "null":
                return Node("literal", token.at, "null")
            if self.accept("(") is not None:
                return Node("call", token.at, token.text, self.arguments(")"))
            return Node("ident", token.at, token.text)
        if token.kind == "op":
            if token.text == ".":
                name = self.take()
                if name.kind == "ident":
                    if self.accept("(") is not None:
                        return Node("call", name.at, name.text, self.arguments(")"))
                    return Node("ident", name.at, name.text)
            if token.text == "(":
                inner_node = self.expr()
                self.expect(")")
                return inner_node
            if token.text == "[":
                return Node("list", token.at, "[]", self.arguments("]"))
            if token.text == "{":
                entries: list[Node] = []
                if self.accept("}") is None:
                    while True:
                        key = self.expr()
                        self.expect(":")
                        entries.extend((key, self.expr()))
                        if self.accept("}") is not None:
                            break
                        self.expect(",")
                        if self.accept("}") is not None:
                            break
                return Node("map", token.at, "{}", tuple(entries))
        raise error_at(
            self.source, token.at, f"unexpected {token.text or 'end of the expression'!r}"
        )


def error_at(source: str, at: int, message: str) -> CheckError:
    before = source[:at]
    line = before.count("\n") + 1
    column = at - (before.rfind("\n") + 1) + 1
    return CheckError(message, line=line, column=column)
