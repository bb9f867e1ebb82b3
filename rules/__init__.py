"""Admin-written YAML turned into validated, frozen rule objects.

``load_rules(text)`` returns a ``RuleSet`` or raises ``RulesInvalid``, whose
``errors`` name the file, line, column and JSON pointer of every problem found.
Nothing here does I/O except ``load_rules_file``, which reads one file.
"""

from __future__ import annotations

from os import PathLike

from rules.cohort import Cohort
from rules.duration import IsoDuration
from rules.errors import RuleError, RulesInvalid
from rules.expr import Activation, Expr, ExprError
from rules.model import Rule, RuleSet, Streak, Threshold
from rules.tenure import TenureBand, tenure_band
from rules.yamlsrc import validate

__all__ = [
    "Activation",
    "Cohort",
    "Expr",
    "ExprError",
    "IsoDuration",
    "Rule",
    "RuleError",
    "RuleSet",
    "RulesInvalid",
    "Streak",
    "TenureBand",
    "Threshold",
    "load_rules",
    "load_rules_file",
    "tenure_band",
]


def load_rules(text: str, *, source: str = "rules.yaml") -> RuleSet:
    """Validate a rules file's text; ``source`` names it in errors."""
    return validate(RuleSet, text, source=source)


def load_rules_file(path: str | PathLike[str]) -> RuleSet:
    """Read and validate a rules file; an unreadable file is a ``RulesInvalid`` (``file_error``)."""
    source = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise RulesInvalid.single(
            source=source, code="file_error", message=f"the file is not UTF-8 text ({exc.reason})"
        ) from exc
    except OSError as exc:
        raise RulesInvalid.single(
            source=source, code="file_error", message=f"cannot read the file: {exc.strerror}"
        ) from exc
    return load_rules(text, source=source)
