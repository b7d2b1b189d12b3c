"""The commerce source contract: what the PostgreSQL tables `commerce.<entity>` and the landing files
`input/<entity>/<YYYY-MM-DD>/*.csv` (and a history import's CSV files) must hold. One place: staging
casts and quarantines by it, its Pandera models are built from it, the demo source's tables are created
from it, and the README and the raw assets' descriptions show it.

Per entity: the business key, every column with its type, whether it is required, its rule and its
meaning, which columns are personal data, and the drifted source names we map back to the contract.

Time: every timestamp is an instant. A value with an offset (`2026-01-01T09:00:00+01:00`) means that
instant; a value without one is local time of the source's time zone (`COMMERCE_SOURCE_TIMEZONE`,
default UTC). Business dates (an order's `order_date`) are local dates in that zone; processing dates
(the partitions) are the UTC dates of `updated_at` (PostgreSQL) or the delivery folder's date (files).
A row version is identified by its key and `updated_at`: the latest version per key wins.
"""

from dataclasses import dataclass, field
from typing import Any

# Type families: what "the same type" means when comparing a source column with the contract.
DUCKDB_TYPES = {"int": "BIGINT", "decimal": "DECIMAL(12, 2)", "text": "VARCHAR", "timestamp": "TIMESTAMPTZ"}
TYPE_WORDS = {"int": "an integer", "decimal": "a decimal number", "text": "text", "timestamp": "a timestamp"}
ORDER_STATUSES = ("placed", "approved", "shipped", "delivered", "cancelled")


@dataclass(frozen=True)
class Column:
    """One column of the contract: type family, whether a row needs a value, a rule on the value (Pandera
    field arguments, also compiled to SQL for the quarantine) said in words, and what it means."""

    type: str
    meaning: str
    required: bool = False
    rule: dict[str, Any] = field(default_factory=dict)
    rule_words: str = ""

    @property
    def words(self) -> str:
        """The contract's words for the column, as the README and a quarantine reason say them."""
        need = "required" if self.required else "optional"
        return f"{need}, {TYPE_WORDS[self.type]}" + (f", {self.rule_words}" if self.rule_words else "")


def _id(meaning: str, required: bool = True) -> Column:
    return Column("int", meaning, required, {"gt": 0}, "greater than 0")


def _at(meaning: str, required: bool = False) -> Column:
    return Column("timestamp", meaning, required)


_COUNTRY = {"str_length": {"min_value": 2, "max_value": 2}}
_UPDATED = _at("when the source last changed this row (this version's time)", required=True)


@dataclass(frozen=True)
class Entity:
    name: str
    key: str
    meaning: str
    columns: dict[str, Column]
    pii: tuple[str, ...] = ()
    # Kept in clear for analysts (location KPIs), but like `pii` never shown to operators.
    identifying: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)  # drifted source name -> contract name

    @property
    def personal(self) -> tuple[str, ...]:
        """Fields masked wherever a row is shown to operators (resources/privacy.py)."""
        return (*self.pii, *self.identifying)

    @property
    def types(self) -> dict[str, str]:
        """column -> type family."""
        return {c: col.type for c, col in self.columns.items()}

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c for c, col in self.columns.items() if col.required)


ENTITIES = {
    e.name: e
    for e in [
        Entity(
            "shops",
            key="shop_id",
            meaning="The shops (own shops, franchises, or a marketplace's sellers) that sell order positions.",
            columns={
                "shop_id": _id("the shop's business key"),
                "shop_name": Column("text", "display name"),
                "city": Column("text", "city the shop is in", True),
                "country": Column("text", "country the shop is in", True, _COUNTRY, "a two-letter ISO code"),
                "channel": Column("text", "sales channel, e.g. own, franchise, marketplace"),
                "updated_at": _UPDATED,
            },
            aliases={"seller_id": "shop_id", "seller_city": "city"},
        ),
        Entity(
            "products",
            key="product_id",
            meaning="The catalogue, every product whether or not it was ever ordered.",
            columns={
                "product_id": _id("the product's business key"),
                "product_name": Column("text", "display name"),
                "category": Column("text", "product category"),
                "price": Column(
                    "decimal",
                    "list price per unit; empty where the shops set their own prices (a marketplace)",
                    rule={"ge": 0},
                    rule_words="at least 0",
                ),
                "updated_at": _UPDATED,
            },
            aliases={"unit_price": "price", "product_category_name": "category"},
        ),
        Entity(
            "customers",
            key="customer_id",
            meaning="Customers; every change (a move included) is a new version, kept as SCD2 history.",
            columns={
                "customer_id": _id("the customer's business key"),
                "first_name": Column("text", "first name (personal: pseudonymized in staging)"),
                "last_name": Column("text", "last name (personal: pseudonymized in staging)"),
                "email": Column("text", "email address (personal: pseudonymized in staging)"),
                "phone": Column("text", "phone number (personal: pseudonymized in staging)"),
                "street": Column("text", "street and number (personal: pseudonymized in staging)"),
                "postcode": Column("text", "postcode (kept for location KPIs, masked for operators)"),
                "city": Column("text", "city of the address", True),
                "country": Column("text", "country of the address", True, _COUNTRY, "a two-letter ISO code"),
                "created_at": _at("when the customer account was created"),
                "updated_at": _UPDATED,
            },
            pii=("first_name", "last_name", "email", "phone", "street"),
            identifying=("postcode",),
            aliases={"email_address": "email", "phone_number": "phone", "zip": "postcode"},
        ),
        Entity(
            "orders",
            key="order_id",
            meaning=(
                "Orders and their life cycle: purchase, payment approval, hand-over to the carrier, delivery "
                "(against the delivery date promised) or cancellation. Intake and revenue come from the positions."
            ),
            columns={
                "order_id": _id("the order's business key"),
                "customer_id": _id("the buying customer"),
                "shop_id": _id("the shop the order was placed in; empty when its positions name their shops", False),
                "status": Column(
                    "text",
                    "life-cycle status",
                    rule={"isin": list(ORDER_STATUSES)},
                    rule_words="one of " + ", ".join(ORDER_STATUSES),
                ),
                "purchased_at": _at("when the customer placed the order; its local date is the business date", True),
                "approved_at": _at("when the payment was approved"),
                "shipped_at": _at("when the order was handed to the carrier"),
                "delivered_at": _at("when the customer received it"),
                "estimated_delivery_at": _at("the delivery date promised to the customer (late if delivered after)"),
                "cancelled_at": _at("when it was cancelled"),
                "updated_at": _UPDATED,
            },
            aliases={
                "purchase_date": "purchased_at",
                "shipping_date": "shipped_at",
                "delivery_date": "delivered_at",
                "order_purchase_timestamp": "purchased_at",
                "order_approved_at": "approved_at",
                "order_delivered_carrier_date": "shipped_at",
                "order_delivered_customer_date": "delivered_at",
                "order_estimated_delivery_date": "estimated_delivery_at",
                "order_status": "status",
            },
        ),
        Entity(
            "order_positions",
            key="position_id",
            meaning=(
                "The items of an order; each names the shop that sold it, so one order can span several shops. "
                "Order intake is price x quantity; freight is charged beside it."
            ),
            columns={
                "position_id": _id("the position's business key"),
                "order_id": _id("the order it belongs to"),
                "product_id": _id("the product sold"),
                "shop_id": _id("the shop that sold it; empty: the order's shop", False),
                "quantity": Column("int", "units sold", True, {"gt": 0}, "greater than 0"),
                "price": Column("decimal", "price per unit charged", True, {"ge": 0}, "at least 0"),
                "freight": Column(
                    "decimal",
                    "freight charged for the position (not part of the intake)",
                    False,
                    {"ge": 0},
                    "at least 0",
                ),
                "updated_at": _UPDATED,
            },
            aliases={"qty": "quantity", "unit_price": "price", "seller_id": "shop_id", "freight_value": "freight"},
        ),
    ]
}


def contract_markdown(entity: Entity) -> str:
    """The entity's contract as a Markdown table (the README's, and the raw assets' descriptions)."""
    rows = [
        f"`{entity.name}` (key `{entity.key}`): {entity.meaning}",
        "",
        "| column | contract | meaning |",
        "|---|---|---|",
    ]
    rows += [f"| `{c}` | {col.words} | {col.meaning} |" for c, col in entity.columns.items()]
    return "\n".join(rows)


def type_family(duckdb_type: str) -> str:
    """The family of a DuckDB type name, e.g. 'INTEGER' -> 'int', 'TIMESTAMP WITH TIME ZONE' -> 'timestamp'."""
    t = duckdb_type.upper()
    if t in {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}:
        return "int"
    if t.startswith(("DECIMAL", "DOUBLE", "FLOAT", "REAL")):
        return "decimal"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t == "VARCHAR":
        return "text"
    return t.lower()
