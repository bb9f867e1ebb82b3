"""Errors raised while loading an admin's YAML.

``RulesInvalid`` is the one exception a loader raises; it carries every problem
found, each a ``RuleError`` that names the file, line and column at fault::

    Exception
    └── RulesInvalid          .errors: list[RuleError]

Error codes (``RuleError.code``) are stable, snake_case and meant for machines:

=====================  ======================================================
``file_error``         the file could not be read (missing, unreadable, not UTF-8)
``empty_document``     the document holds nothing (or only comments)
``yaml_syntax``        the text is not valid YAML (or uses an unsupported tag)
``duplicate_key``      a mapping names the same key twice
``too_complex``        aliases expand the document beyond a sane size
``missing``            a required key is absent
``extra_forbidden``    a key that the format does not know
``invalid_type``       a value of the wrong kind (a string where a number goes)
``invalid_value``      a value of the right kind that breaks a rule of the format
``invalid_expression`` a CEL expression that does not compile or names an unknown variable
``invalid_duration``   text that is not an ISO 8601 duration
``float_money``        money written as a YAML float instead of a quoted string
``duplicate_id``       an id (or cohort name) used twice in one list
=====================  ======================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathElement = str | int


def json_pointer(path: Sequence[object]) -> str:
    """Render a path as an RFC 6901 JSON pointer: ``("rules", 2, "cap")`` → ``/rules/2/cap``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


@dataclass(frozen=True, slots=True)
class RuleError:
    """One problem in a YAML source, located as precisely as the source allows.

    ``line`` and ``column`` are 1-based and ``None`` when no position is known
    (a file that cannot be read). ``path`` is a JSON pointer into the document,
    ``""`` for the document itself.
    """

    source: str
    line: int | None
    column: int | None
    path: str
    message: str
    code: str

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, str | int | None]:
        """The error as the HTTP API reports it in an error body's details."""
        return {
            "source": self.source,
            "line": self.line,
            "column": self.column,
            "pointer": self.path,
            "message": self.message,
            "code": self.code,
        }


class RulesInvalid(Exception):
    """A YAML source that cannot be loaded; ``errors`` lists every problem found, in file order."""

    def __init__(self, errors: Iterable[RuleError]) -> None:
        ordered = sorted(
            errors,
            key=lambda e: (e.source, e.line if e.line is not None else 0, e.column or 0),
        )
        if not ordered:
            raise ValueError("RulesInvalid needs at least one error")
        self.errors: list[RuleError] = ordered
        super().__init__("\n".join(str(e) for e in ordered))

    @classmethod
    def single(
        cls,
        *,
        source: str,
        message: str,
        code: str,
        line: int | None = None,
        column: int | None = None,
        path: str = "",
    ) -> RulesInvalid:
        """Build the exception for one error."""
        return cls([RuleError(source, line, column, path, message, code)])
