"""The data contract of each commerce entity: columns and their types, business key, personal data,
and the source column names we know how to map when the source drifts."""

from dataclasses import dataclass, field

# Type families: what "the same type" means when comparing a source column with the contract.
DUCKDB_TYPES = {"int": "BIGINT", "decimal": "DECIMAL(12, 2)", "text": "VARCHAR", "timestamp": "TIMESTAMPTZ"}


@dataclass(frozen=True)
class Entity:
    name: str
    key: str
    columns: dict[str, str]  # column -> type family
    required: tuple[str, ...]
    pii: tuple[str, ...] = ()
    # Kept in clear for analysts (location KPIs), but like `pii` never shown to operators.
    identifying: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)  # drifted source name -> contract name

    @property
    def personal(self) -> tuple[str, ...]:
        """Fields masked wherever a row is shown to operators (resources/privacy.py)."""
        return (*self.pii, *self.identifying)


ENTITIES = {
    e.name: e
    for e in [
        Entity(
            "shops",
            key="shop_id",
            columns={
                "shop_id": "int",
                "shop_name": "text",
                "city": "text",
                "country": "text",
                "channel": "text",
                "updated_at": "timestamp",
            },
            required=("shop_id", "city", "country", "updated_at"),
        ),
        Entity(
            "products",
            key="product_id",
            columns={
                "product_id": "int",
                "product_name": "text",
                "category": "text",
                "price": "decimal",
                "updated_at": "timestamp",
            },
            required=("product_id", "price", "updated_at"),
            aliases={"unit_price": "price"},
        ),
        Entity(
            "customers",
            key="customer_id",
            columns={
                "customer_id": "int",
                "first_name": "text",
                "last_name": "text",
                "email": "text",
                "phone": "text",
                "street": "text",
                "postcode": "text",
                "city": "text",
                "country": "text",
                "created_at": "timestamp",
                "updated_at": "timestamp",
            },
            required=("customer_id", "city", "country", "updated_at"),
            pii=("first_name", "last_name", "email", "phone", "street"),
            identifying=("postcode",),
            aliases={"email_address": "email", "phone_number": "phone", "zip": "postcode"},
        ),
        Entity(
            "orders",
            key="order_id",
            columns={
                "order_id": "int",
                "customer_id": "int",
                "shop_id": "int",
                "status": "text",
                "purchased_at": "timestamp",
                "shipped_at": "timestamp",
                "delivered_at": "timestamp",
                "cancelled_at": "timestamp",
                "updated_at": "timestamp",
            },
            required=("order_id", "customer_id", "shop_id", "purchased_at", "updated_at"),
            aliases={"purchase_date": "purchased_at", "shipping_date": "shipped_at", "delivery_date": "delivered_at"},
        ),
        Entity(
            "order_positions",
            key="position_id",
            columns={
                "position_id": "int",
                "order_id": "int",
                "product_id": "int",
                "quantity": "int",
                "price": "decimal",
                "updated_at": "timestamp",
            },
            required=("position_id", "order_id", "product_id", "quantity", "price", "updated_at"),
            aliases={"qty": "quantity", "unit_price": "price"},
        ),
    ]
}


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
