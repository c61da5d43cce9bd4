"""A parser for the FHIRPath subset SQL-on-FHIR views use: paths, indexers, function calls,
literals, %constants, $this, and the boolean, comparison, arithmetic and union operators.

The parser turns an expression into a small tree; `views.py` compiles the tree to SQL, so a
view runs inside the engine instead of being interpreted resource by resource in Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from joinedup.errors import InputError


@dataclass(frozen=True)
class Node:
    """Base of every FHIRPath syntax tree node."""


@dataclass(frozen=True)
class This(Node):
    """The input collection (`$this`, or the start of a path)."""


@dataclass(frozen=True)
class Literal(Node):
    value: str | int | float | bool


@dataclass(frozen=True)
class Constant(Node):
    """`%name`: a view constant or an environment variable such as `%rowIndex`."""

    name: str


@dataclass(frozen=True)
class Member(Node):
    """`target.name`: the children called `name` of every item of `target`."""

    target: Node
    name: str


@dataclass(frozen=True)
class Call(Node):
    """`target.function(args)`."""

    target: Node
    function: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Index(Node):
    """`target[index]`: the item at a 0-based position."""

    target: Node
    index: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class TypeName(Node):
    """A type specifier argument, e.g. `Patient` in `getReferenceKey(Patient)`."""

    name: str


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>\d+(?:\.\d+)?)
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<quoted>`(?:[^`\\]|\\.)*`)
    |(?P<constant>%[A-Za-z_][A-Za-z0-9_]*|%`[^`]*`)
    |(?P<special>\$this|\$index|\$total)
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op><=|>=|!=|!~|[=~<>+\-*/|&.,()\[\]])
    )""",
    re.VERBOSE,
)

#: Binary operators by precedence (FHIRPath §6, lowest first).
_PRECEDENCE: dict[str, int] = {
    "implies": 1,
    "or": 2,
    "xor": 2,
    "and": 3,
    "in": 4,
    "contains": 4,
    "=": 5,
    "~": 5,
    "!=": 5,
    "!~": 5,
    "<": 6,
    ">": 6,
    "<=": 6,
    ">=": 6,
    "|": 7,
    "+": 8,
    "-": 8,
    "&": 8,
    "*": 9,
    "/": 9,
    "div": 9,
    "mod": 9,
}
_ESCAPES = {
    "'": "'",
    '"': '"',
    "`": "`",
    "\\": "\\",
    "/": "/",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        match = _TOKEN.match(stripped, pos)
        if match is None or match.end() == pos:
            raise InputError(f"FHIRPath {text!r}", f"unexpected character at position {pos}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def fail(self, reason: str) -> InputError:
        return InputError(f"FHIRPath {self.text!r}", reason)

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise self.fail("unexpected end of expression")
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token[1] != value:
            raise self.fail(f"expected {value!r}, found {token[1]!r}")

    def parse(self) -> Node:
        if not self.tokens:
            raise self.fail("empty expression")
        node = self.expression(0)
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def _binary_op(self) -> str | None:
        token = self.peek()
        if token is None:
            return None
        kind, value = token
        if kind == "op" and value in _PRECEDENCE:
            return value
        if kind == "ident" and value in _PRECEDENCE:
            return value
        return None

    def expression(self, min_precedence: int) -> Node:
        left = self.unary()
        while True:
            op = self._binary_op()
            if op is None or _PRECEDENCE[op] < min_precedence:
                return left
            self.take()
            right = self.expression(_PRECEDENCE[op] + 1)
            left = Binary(op, left, right)

    def unary(self) -> Node:
        token = self.peek()
        if token is not None and token == ("op", "-"):
            self.take()
            return Binary("-", Literal(0), self.postfix(self.term()))
        if token is not None and token == ("op", "+"):
            self.take()
        return self.postfix(self.term())

    def term(self) -> Node:
        kind, value = self.take()
        if kind == "number":
            return Literal(float(value) if "." in value else int(value))
        if kind == "string":
            return Literal(_unescape(value[1:-1]))
        if kind == "constant":
            return Constant(value[2:-1] if value.startswith("%`") else value[1:])
        if kind == "special":
            if value != "$this":
                raise self.fail(f"{value} is not supported")
            return This()
        if value == "(":
            inner = self.expression(0)
            self.expect(")")
            return inner
        if kind == "ident" and value in ("true", "false"):
            return Literal(value == "true")
        if kind in ("ident", "quoted"):
            name = value if kind == "ident" else _unescape(value[1:-1])
            return self.invocation(This(), name)
        raise self.fail(f"unexpected {value!r}")

    def invocation(self, target: Node, name: str) -> Node:
        if self.peek() == ("op", "("):
            self.take()
            args: list[Node] = []
            if self.peek() != ("op", ")"):
                while True:
                    args.append(self.argument(name))
                    if self.peek() == ("op", ","):
                        self.take()
                        continue
                    break
            self.expect(")")
            return Call(target, name, tuple(args))
        return Member(target, name)

    def argument(self, function: str) -> Node:
        if function in ("ofType", "getReferenceKey", "is", "as"):
            kind, value = self.take()
            if kind != "ident":
                raise self.fail(f"{function}() takes a type name, found {value!r}")
            name = value
            while self.peek() == ("op", "."):
                self.take()
                name += "." + self.take()[1]
            return TypeName(name)
        return self.expression(0)

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek()
            if token == ("op", "."):
                self.take()
                kind, value = self.take()
                if kind not in ("ident", "quoted"):
                    raise self.fail(f"expected a name after '.', found {value!r}")
                name = value if kind == "ident" else _unescape(value[1:-1])
                node = self.invocation(node, name)
            elif token == ("op", "["):
                self.take()
                index = self.expression(0)
                self.expect("]")
                node = Index(node, index)
            else:
                return node


def parse(text: str) -> Node:
    """The syntax tree of a FHIRPath expression, or an InputError saying where it fails."""
    if not isinstance(text, str):
        raise InputError("FHIRPath", f"expected an expression as text, got {text!r}")
    return _Parser(text).parse()
