"""The rules file's ``sources:`` section: how Slack, an LMS (xAPI) and CRM webhooks become events.

Each source turns its vendor's payload into ordinary events, which then meet the
rules like any other; nothing here awards points. Secrets (Slack's signing secret,
CRM webhook secrets) are program settings, never part of this file::

    sources:
      slack:
        commands:
          - command: /kudos             # the slash command as configured in the Slack app
            event: slack.kudos          # the event type each recipient's kudos becomes
            points: {default: 10, min: 1, max: 50}
        reactions:
          - emoji: taco                 # :taco: on a message gives its author points
            event: slack.kudos
            points: 5
      xapi:
        statements:
          - verb: http://adlnet.gov/expapi/verbs/completed
            activity_type: http://adlnet.gov/expapi/activities/course   # optional
            event: lms.course_completed
      crm:
        hubspot_deals:                  # POST /v1/sources/crm/hubspot_deals
          id: "join('', ['hubspot-deal-', to_string(objectId)])"
          event: crm.deal_closed
          user: properties.hubspot_owner_id.value
          user_match: attribute:hubspot_owner_id
          ignore_when: "properties.dealstage.value != 'closedwon'"
          verify: {preset: hubspot_v3}

CRM expressions are JMESPath (https://jmespath.org), compiled once when the file loads.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import jmespath
import jmespath.exceptions
import jmespath.parser
from annotated_types import MaxLen, MinLen
from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from rules.explain import describe
from rules.fields import EventType, PositiveInt

MAX_EXPRESSION = 2000  # characters of one JMESPath expression
MAX_ITEMS = 100  # commands, reactions, statement mappings, CRM mappings, attributes


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JmesPath:
    """A compiled JMESPath expression and the text it came from."""

    __slots__ = ("_compiled", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._compiled: jmespath.parser.ParsedResult = jmespath.compile(source)

    def search(self, data: Any) -> Any:
        """The expression's value over ``data``; a JMESPath runtime error raises ``JMESPathError``."""
        return self._compiled.search(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JmesPath) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __repr__(self) -> str:
        return f"JmesPath({self.source!r})"


def _jmespath(value: Any) -> JmesPath:
    if isinstance(value, JmesPath):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "invalid_type", f"expected a JMESPath expression in quotes, got {describe(value)}"
        )
    if not value.strip():
        raise PydanticCustomError("invalid_expression", "the expression is empty")
    if len(value) > MAX_EXPRESSION:
        raise PydanticCustomError(
            "invalid_expression", f"an expression may be at most {MAX_EXPRESSION} characters"
        )
    try:
        return JmesPath(value)
    except jmespath.exceptions.JMESPathError as exc:
        position = getattr(exc, "lex_position", None)
        context: dict[str, Any] = {}
        if isinstance(position, int) and 0 <= position <= len(value):
            before = value[:position]
            context = {
                "text_line": before.count("\n") + 1,
                "text_column": position - (before.rfind("\n") + 1) + 1,
            }
        message = getattr(exc, "msg", None) or str(exc).splitlines()[0]
        raise PydanticCustomError(
            "invalid_expression", f"not a valid JMESPath expression: {message}", context
        ) from None


Expression = Annotated[
    JmesPath, PlainValidator(_jmespath), PlainSerializer(lambda value: value.source)
]

_COMMAND = re.compile(r"/[a-z0-9_-]{1,31}")
_EMOJI = re.compile(r"[a-z0-9_+'-]{1,100}")
_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S{1,2000}")
_MAPPING = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_HEADER = re.compile(r"[A-Za-z0-9-]{1,100}")
_ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _pattern(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise PydanticCustomError("invalid_value", f"expected {what}, got {describe(value)}")
        return value

    return PlainValidator(check)


SlashCommand = Annotated[str, _pattern(_COMMAND, "a slash command such as /kudos")]
Emoji = Annotated[str, _pattern(_EMOJI, "an emoji name without colons, such as taco")]
Iri = Annotated[str, _pattern(_IRI, "an IRI such as http://adlnet.gov/expapi/verbs/completed")]
MappingName = Annotated[
    str, _pattern(_MAPPING, "a mapping name of lower-case letters, digits, '_' and '-'")
]
HeaderName = Annotated[str, _pattern(_HEADER, "an HTTP header name")]
AttributeName = Annotated[str, _pattern(_ATTRIBUTE, "an attribute name such as amount")]


def _user_match(value: Any) -> str:
    if value in ("id", "email", "slack_id"):
        return str(value)
    if (
        isinstance(value, str)
        and value.startswith("attribute:")
        and _ATTRIBUTE.fullmatch(value.removeprefix("attribute:"))
    ):
        return value
    raise PydanticCustomError(
        "invalid_value",
        f"user_match is id, email, slack_id or attribute:<name>, got {describe(value)}",
    )


UserMatch = Annotated[str, PlainValidator(_user_match)]


# --- Slack -------------------------------------------------------------------------------


class PointsRange(_Frozen):
    """Points a kudos may give: ``default`` when the text names none, within ``min``..``max``."""

    default: PositiveInt = 10
    min: PositiveInt = 1
    max: PositiveInt = 100

    @model_validator(mode="after")
    def _ordered(self) -> PointsRange:
        if self.min > self.max:
            raise PydanticCustomError("invalid_value", "min must not exceed max", {"at": ("min",)})
        if not self.min <= self.default <= self.max:
            raise PydanticCustomError(
                "invalid_value", "default must lie between min and max", {"at": ("default",)}
            )
        return self


class SlackCommand(_Frozen):
    """``/kudos @maria 10 for the launch demo``: one event per person mentioned.

    The event carries ``actor_id`` (the giver) and the attributes ``points``, ``reason``
    and ``channel``, so a peer rule can say ``points: 'event.attributes.points'``.
    """

    command: SlashCommand
    event: EventType
    points: PointsRange = PointsRange()
    max_recipients: Annotated[int, PlainValidator(lambda v: _bounded(v, 1, 20))] = 5
    # Post the kudos in the channel when every recipient got it (else only the giver
    # sees the answer, with the reasons).
    announce: Annotated[bool, PlainValidator(lambda v: _strict_bool(v))] = False


def _bounded(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PydanticCustomError(
            "invalid_value", f"expected a whole number from {low} to {high}, got {describe(value)}"
        )
    return value


class SlackReaction(_Frozen):
    """A reaction (``:taco:``) on a message gives the message's author ``points`` from the
    person who reacted; removing the reaction takes them back (``retract_on_remove``)."""

    emoji: Emoji
    event: EventType
    points: PositiveInt = 1
    retract_on_remove: Annotated[bool, PlainValidator(lambda v: _strict_bool(v))] = True


def _strict_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise PydanticCustomError("invalid_type", f"expected true or false, got {describe(value)}")
    return value


class SlackSource(_Frozen):
    commands: Annotated[tuple[SlackCommand, ...], MaxLen(MAX_ITEMS)] = ()
    reactions: Annotated[tuple[SlackReaction, ...], MaxLen(MAX_ITEMS)] = ()

    @model_validator(mode="after")
    def _unique(self) -> SlackSource:
        _unique_values([c.command for c in self.commands], "commands", "command")
        _unique_values([r.emoji for r in self.reactions], "reactions", "emoji")
        return self

    def command(self, name: str) -> SlackCommand | None:
        return next((c for c in self.commands if c.command == name), None)

    def reaction(self, emoji: str) -> SlackReaction | None:
        # Skin tones arrive as ``thumbsup::skin-tone-2``: the base emoji counts.
        base = emoji.split("::", 1)[0]
        return next((r for r in self.reactions if r.emoji == base), None)


# --- xAPI --------------------------------------------------------------------------------


class XapiStatement(_Frozen):
    """Statements with this ``verb`` (and, if given, this object ``activity_type``) become
    events of type ``event``."""

    verb: Iri
    activity_type: Iri | None = None
    event: EventType


class XapiSource(_Frozen):
    """``statements`` are tried in order; the first that matches a statement wins.

    ``account`` says how an actor's ``account.name`` names a user (by default it is the
    user's id); ``mbox`` and ``mbox_sha1sum`` always match the user's email.
    """

    statements: Annotated[tuple[XapiStatement, ...], MinLen(1), MaxLen(MAX_ITEMS)]
    account: UserMatch = "id"

    def event_for(self, verb: str, activity_type: str | None) -> str | None:
        for mapping in self.statements:
            if mapping.verb == verb and mapping.activity_type in (None, activity_type):
                return mapping.event
        return None


# --- CRM ---------------------------------------------------------------------------------


class Verification(_Frozen):
    """An HMAC over the raw body in a header, or ``preset: hubspot_v3``.

    The secret is the program setting ``crm_webhook_secrets.<mapping>``.
    """

    preset: Literal["hubspot_v3"] | None = None
    header: HeaderName | None = None
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: Annotated[str, MaxLen(20)] = ""  # e.g. "sha256=" before the digest
    timestamp_header: HeaderName | None = None  # signed as "<timestamp>.<body>" when set
    tolerance_seconds: Annotated[int, PlainValidator(lambda v: _bounded(v, 1, 86400))] = 300

    @model_validator(mode="after")
    def _one_kind(self) -> Verification:
        if self.preset is None and self.header is None:
            raise PydanticCustomError(
                "missing", "verify needs 'header' (an HMAC of the body) or 'preset: hubspot_v3'"
            )
        if self.preset is not None and self.header is not None:
            raise PydanticCustomError(
                "invalid_value", "give either 'preset' or 'header', not both", {"at": ("header",)}
            )
        return self


class CrmMapping(_Frozen):
    """How one CRM webhook's JSON becomes events (every expression is JMESPath).

    ``records`` picks the list of records in a payload that carries several (HubSpot
    sends an array); without it the payload is one record. Per record: ``id`` gives the
    event id (the idempotency key: the same deal gives the same id), ``event`` a fixed
    type or ``type`` an expression, ``user`` the person (matched by ``user_match``),
    ``time`` when it happened (RFC 3339 text, or epoch milliseconds), ``attributes``
    named values. A record for which ``ignore_when`` is true is skipped; one for which
    ``retract_when`` is true retracts the event with that id.
    """

    records: Expression | None = None
    id: Expression
    event: EventType | None = None
    type: Expression | None = None
    user: Expression | None = None  # needed unless every record is ignored or retracted
    user_match: UserMatch = "email"
    time: Expression | None = None
    attributes: Annotated[dict[AttributeName, Expression], MaxLen(MAX_ITEMS)] = {}
    ignore_when: Expression | None = None
    retract_when: Expression | None = None
    source: Annotated[str, MinLen(1), MaxLen(200)] | None = None
    verify: Verification | None = None

    @model_validator(mode="after")
    def _type(self) -> CrmMapping:
        if (self.event is None) == (self.type is None):
            raise PydanticCustomError(
                "missing" if self.event is None else "invalid_value",
                "a mapping needs either 'event' (a fixed event type) or 'type' (an expression)",
                {} if self.event is None else {"at": ("type",)},
            )
        return self


class HrisSource(_Frozen):
    """Events the directory itself implies, sent by the worker once per person per year:
    ``hris.work_anniversary`` (``years``) from ``hire_date``, and, when ``birthdays`` is
    true, ``hris.birthday`` from the user attribute ``birth_date``. Either is sent only
    when a rule, streak or challenge of the program uses its event type."""

    anniversaries: Annotated[bool, PlainValidator(lambda v: _strict_bool(v))] = True
    birthdays: Annotated[bool, PlainValidator(lambda v: _strict_bool(v))] = False


class Sources(_Frozen):
    slack: SlackSource | None = None
    hris: HrisSource | None = None
    xapi: XapiSource | None = None
    crm: Annotated[dict[MappingName, CrmMapping], MaxLen(MAX_ITEMS)] = {}


def _unique_values(values: list[str], field: str, key: str) -> None:
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in seen:
            raise PydanticCustomError(
                "duplicate_id",
                f"{key} '{value}' is given twice (first at {field}/{seen[value]})",
                {"at": (field, index, key)},
            )
        seen[value] = index


__all__ = [
    "CrmMapping",
    "Expression",
    "HrisSource",
    "JmesPath",
    "PointsRange",
    "SlackCommand",
    "SlackReaction",
    "SlackSource",
    "Sources",
    "Verification",
    "XapiSource",
    "XapiStatement",
]
