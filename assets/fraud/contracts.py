"""The written contracts of the fraud topics' messages: what a producer of checkout risk events or buyer
changes must send, field by field (type, required or not, accepted values, meaning), with the message's
Kafka key, its identity and the meaning and time zone of its timestamps.

This is the one place they are written: the SQL that validates each message is generated from it (a
message that breaks the contract is quarantined with the contract's words in its reason, e.g.
`wrong_type:order_amount (contract: required number > 0, within its market's min_amount..max_amount)`),
and so are the contract tables of the README and of the bronze assets' descriptions in the UI
(`markdown`; tests/test_fraud_history.py keeps the README in step)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

F = TypeVar("F", bound=Callable)

# JSON types (DuckDB's json_type) a field of each contract type may carry; JSON null is an absent value.
JSON_TYPES = {
    "string": ("VARCHAR",),
    "number": ("BIGINT", "UBIGINT", "DOUBLE"),
    "integer": ("BIGINT", "UBIGINT"),
    "timestamp": ("VARCHAR",),
}
SQL_TYPES = {"string": "VARCHAR", "number": "DOUBLE", "integer": "BIGINT", "timestamp": "TIMESTAMPTZ"}
# How a quarantine reason quotes the contract: `<code>:<field>[=<value>] (contract: <words>)`.
CONTRACT_WORDS = " (contract: "

ACCEPTED_TIMES = "ISO 8601, from FRAUD_EARLIEST_EVENT_DATE to FRAUD_MAX_CLOCK_SKEW past its arrival"
TIMESTAMPS = (
    "ISO 8601 text with its UTC offset, e.g. `2026-12-01T09:30:00.123Z` or `2026-12-01T10:30:00+01:00`; "
    "without an offset it is read as UTC. Stored in UTC; dates are UTC dates. Accepted from "
    "`FRAUD_EARLIEST_EVENT_DATE` to `FRAUD_MAX_CLOCK_SKEW` past the time the broker received the message."
)


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # a key of JSON_TYPES
    required: bool
    meaning: str
    values: tuple[str, ...] = ()  # the accepted values, when the contract fixes them
    minimum: float | None = None
    maximum: float | None = None
    # A rule checked against something outside the message (the market rules, the buyer dimension), in words.
    rule: str = ""
    exclusive_minimum: bool = False

    @property
    def constraint(self) -> str:
        """What the value must be beyond its type, in words (the README's `rule` column)."""
        limits = []
        if self.minimum is not None:
            limits.append(f"{'>' if self.exclusive_minimum else '>='} {_number(self.minimum)}")
        if self.maximum is not None:
            limits.append(f"<= {_number(self.maximum)}")
        values = "one of " + ", ".join(self.values) if self.values else ""
        accepted = ACCEPTED_TIMES if self.type == "timestamp" else ""
        return ", ".join(p for p in (" and ".join(limits), values, accepted, self.rule) if p)

    @property
    def words(self) -> str:
        """The field's rule in the contract's words: what a quarantine reason quotes."""
        text = f"{'required' if self.required else 'optional'} {self.type}"
        if not self.constraint:
            return text
        return f"{text} {self.constraint}" if self.constraint[0] in "<>" else f"{text}: {self.constraint}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Contract:
    topic: str
    message: str  # what one message is
    key: str  # the Kafka message key
    identity: str  # the field that makes two messages the same one
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def reason(
        self, code: str, field: str | None = None, value_sql: str | None = None, quote: str | None = None
    ) -> str:
        """SQL for a quarantine reason quoting the contract: `code[:field][=value] (contract: words)`, the words
        of `quote` (default: `field`; the message's shape when neither is given)."""
        quote = quote or field
        words = self.field(quote).words if quote else "one UTF-8 JSON object per message"
        head = _literal(code + (f":{field}" if field else "") + ("=" if value_sql else ""))
        tail = _literal(f"{CONTRACT_WORDS}{words})")
        return f"{head} || left(coalesce({value_sql}, ''), 64) || {tail}" if value_sql else f"{head} || {tail}"

    def checked_sql(self, source: str, time_sql) -> str:
        """CTEs `decoded`, `parsed` and `typed` over `source` (bronze rows): each field typed as the contract
        says (a timestamp through `time_sql(text)`, NULL unless accepted) and `contract_error`, the first
        rule the message breaks in the contract's words (NULL when it keeps the contract)."""
        paths = "[" + ", ".join(f"'$.{f.name}'" for f in self.fields) + "]"
        typed, errors = [], []
        for i, f in enumerate(self.fields, start=1):
            value = f"v[{i}]"
            if f.type == "string":
                cast = value
            else:
                cast = time_sql(value) if f.type == "timestamp" else f"try_cast({value} AS {SQL_TYPES[f.type]})"
            typed.append(f"{cast} AS {f.name}")
            json_type = f"coalesce(t[{i}], 'NULL')"
            if f.required:
                errors.append(f"WHEN {json_type} = 'NULL' THEN {self.reason('missing_field', f.name)}")
            allowed = ", ".join(_literal(t) for t in (*JSON_TYPES[f.type], "NULL"))
            errors.append(f"WHEN {json_type} NOT IN ({allowed}) THEN {self.reason('wrong_type', f.name)}")
            invalid = []
            if f.type != "string":  # present, but not a value of its type (or not an accepted time)
                invalid.append(f"{value} IS NOT NULL AND {cast} IS NULL")
            if f.type == "number":
                invalid.append(f"NOT isfinite({cast})")
            if f.minimum is not None:
                invalid.append(f"{cast} {'<=' if f.exclusive_minimum else '<'} {f.minimum}")
            if f.maximum is not None:
                invalid.append(f"{cast} > {f.maximum}")
            if invalid:
                errors.append(f"WHEN {' OR '.join(invalid)} THEN {self.reason('invalid_value', f.name)}")
            if f.values:
                accepted = ", ".join(_literal(v) for v in f.values)
                errors.append(f"WHEN {value} NOT IN ({accepted}) THEN {self.reason('unknown_value', f.name, value)}")
        typed_columns, error_cases = ",\n        ".join(typed), "\n            ".join(errors)
        return f"""decoded AS (
    SELECT *, try(decode(payload)) AS body FROM {source}
), parsed AS (
    SELECT *, CASE WHEN json_valid(body) THEN body::JSON END AS doc FROM decoded
), fields AS (
    SELECT topic, "partition", "offset", kafka_timestamp, payload, event_date,
        CASE
            WHEN payload IS NULL OR octet_length(payload) = 0 THEN {self.reason("empty_payload")}
            WHEN body IS NULL THEN {self.reason("invalid_utf8")}
            WHEN doc IS NULL THEN {self.reason("malformed_json")}
            WHEN json_type(doc) <> 'OBJECT' THEN {self.reason("not_a_json_object")}
        END AS structural_error,
        json_type(doc, {paths}) AS t, json_extract_string(doc, {paths}) AS v
    FROM parsed
), typed AS (
    SELECT topic, "partition", "offset", kafka_timestamp, payload, event_date,
        {typed_columns},
        CASE WHEN structural_error IS NOT NULL THEN structural_error
            {error_cases}
        END AS contract_error
    FROM fields
)"""

    def described(self, fn: F) -> F:
        """Decorates an asset function whose docstring becomes its description: the contract follows it."""
        fn.__doc__ = inspect.cleandoc(fn.__doc__ or "") + "\n\n" + self.markdown()
        return fn

    def markdown(self) -> str:
        """The contract as the README and the bronze asset's description show it."""
        rows = [
            f"| `{f.name}` | {f.type} | {'yes' if f.required else 'no'} | {f.constraint} | {f.meaning} |"
            for f in self.fields
        ]
        return "\n".join(
            [
                f"**Topic `{self.topic}`**: {self.message}",
                "",
                "- Message: one UTF-8 JSON object; the fields below, others allowed and ignored (kept in bronze).",
                f"- Kafka key: {self.key}",
                f"- Identity: {self.identity}",
                f"- Timestamps: {TIMESTAMPS}",
                "",
                "| field | type | required | rule | meaning |",
                "|---|---|---|---|---|",
                *rows,
            ]
        )


def reason_code(reason: str) -> str:
    """A quarantine reason without the contract's words: `missing_field:event_id`, `unknown_value:market=ZZ`."""
    return reason.split(CONTRACT_WORDS, 1)[0]


CHECKOUT_EVENTS = Contract(
    topic="fraud.checkout_risk_events",
    message="one checkout of a buyer at a merchant, to be assessed for risk (BNPL: the buyer pays later).",
    key="`buyer_id` as UTF-8 (a re-sent event then lands in its first delivery's partition).",
    identity="`event_id`: a checkout sent again (a producer retry, a replay) carries the same `event_id` and "
    "becomes one decision row; the duplicates are counted, not kept.",
    fields=(
        Field("event_id", "string", True, "The checkout's own id (a UUID), the same on every delivery."),
        Field("delivery_id", "string", False, "This delivery's id: a retry carries a new one."),
        Field(
            "occurred_at",
            "timestamp",
            True,
            "When the checkout happened: the buyer version it is enriched with is the one valid at this "
            "time, and its UTC date is the event's date partition.",
        ),
        Field("market", "string", True, "The market's ISO 3166 code.", rule="a market of markets.yaml"),
        Field(
            "buyer_id",
            "string",
            True,
            "The buying company (personal data: pseudonymized for analysts).",
            rule="a buyer with a change on fraud.buyer_changes at or before `occurred_at`",
        ),
        Field("merchant_id", "string", True, "The selling merchant."),
        Field("order_id", "string", False, "The merchant's order."),
        Field(
            "order_amount",
            "number",
            True,
            "The order's total, in `currency`.",
            minimum=0,
            exclusive_minimum=True,
            rule="within its market's min_amount..max_amount (markets.yaml)",
        ),
        Field("currency", "string", True, "ISO 4217 code.", rule="a currency of its market (markets.yaml)"),
        Field("payment_method", "string", False, "e.g. invoice, installments, direct_debit."),
        Field("payment_terms_days", "integer", False, "Days until payment is due.", minimum=0, maximum=365),
        Field("line_items", "integer", False, "Number of order lines.", minimum=1, maximum=100_000),
        Field("channel", "string", False, "e.g. online, b2b_portal, api."),
    ),
)

BUYER_CHANGES = Contract(
    topic="fraud.buyer_changes",
    message="the full record of one buyer after a change in the CRM (an after-image, as change data capture "
    "sends it): the risk attributes are kept as history (SCD type 2, a version per change of any of them), "
    "the contact attributes as the latest value (SCD type 1, pseudonymized).",
    key="`buyer_id` as UTF-8.",
    identity="`change_id`: a change sent again is the same change. Of two changes of a buyer at the same "
    "`changed_at`, the one that arrived last holds.",
    fields=(
        Field("change_id", "string", True, "The change's own id, the same on every delivery."),
        Field("buyer_id", "string", True, "The buying company (personal data: pseudonymized for analysts)."),
        Field(
            "changed_at",
            "timestamp",
            True,
            "When the change took effect: the version's `valid_from` (a change that arrives late still lands "
            "at this time, not at its arrival).",
        ),
        Field("credit_rating", "string", True, "Credit rating, e.g. AAA to CCC (SCD2)."),
        Field("total_cost", "number", True, "Total cost of the buyer's open credit (SCD2).", minimum=0),
        Field("risk_score", "integer", True, "Risk score (SCD2).", minimum=0, maximum=1000),
        Field("risk_level", "string", True, "Risk level (SCD2).", values=("low", "medium", "high")),
        Field("approval_status", "string", True, "Approval status (SCD2).", values=("approved", "pending", "rejected")),
        Field("name", "string", False, "Company name (SCD1; personal: stored only as a keyed pseudonym)."),
        Field("email", "string", False, "Contact email (SCD1; personal: stored only as a keyed pseudonym)."),
        Field("contact_person", "string", False, "Contact person (SCD1; personal: stored only as a keyed pseudonym)."),
        Field("address", "string", False, "Address (SCD1; personal: stored only as a keyed pseudonym)."),
    ),
)
