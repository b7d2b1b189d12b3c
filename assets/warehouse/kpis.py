"""The KPI marts' headline figures and charts, attached to each materialization of a mart: the figures as
numeric metadata, which the Dagster UI plots over the materializations; the chart as a PNG in the lake
(commerce/marts/charts/<mart>.png) and inline, for those who would rather look than read."""

import base64
import io
from decimal import Decimal

import dagster as dg
import duckdb

from resources import LakeResource

# One row per mart, every shop together: totals to date, in the mart's own terms (a day's revenue only counts
# once its orders are delivered, so the latest day alone would understate it), and for customers the latest
# day, whose new/returning split is the figure of interest. Each rebuild adds one point to the UI's plots.
HEADLINES = {
    "kpi_sales": """
        SELECT max(period_start)::VARCHAR AS latest_day, sum(orders) AS orders_total,
               sum(order_intake) AS order_intake_total, sum(revenue) AS revenue_total,
               sum(orders) FILTER (WHERE period_start = (SELECT max(period_start) FROM marts.kpi_sales))
                   AS orders_latest_day
        FROM marts.kpi_sales WHERE grain = 'day'""",
    "kpi_dropoff": """
        SELECT sum(dropped_intake) AS dropped_intake_total,
               round(1 - sum(revenue) / nullif(sum(order_intake), 0), 4) AS dropoff_rate_total
        FROM marts.kpi_dropoff WHERE grain = 'day'""",
    # A median over every shop cannot be derived from the shops' medians: computed from the facts, as the mart is.
    "kpi_shipping_lag": """
        SELECT count(shipped_at) AS shipped_orders_total, round(median(purchase_to_ship_hours), 2) AS median_lag_hours,
               round(quantile_cont(purchase_to_ship_hours, 0.9), 2) AS p90_lag_hours,
               round(count(*) FILTER (WHERE is_late) / nullif(count(is_late), 0), 4) AS late_delivery_rate_total
        FROM core.fact_orders""",
    "kpi_customers": """
        SELECT period_start::VARCHAR AS latest_day, customers AS customers_latest_day,
               new_share AS new_share_latest_day, returning_share AS returning_share_latest_day
        FROM marts.kpi_customers WHERE grain = 'day' ORDER BY period_start DESC LIMIT 1""",
}
# What each chart draws: a query whose first column is the x axis and every other column one line.
CHARTS = {
    "kpi_sales": (
        "Order intake and revenue per day, all shops",
        "SELECT period_start AS day, sum(order_intake) AS order_intake, sum(revenue) AS revenue "
        "FROM marts.kpi_sales WHERE grain = 'day' GROUP BY 1 ORDER BY 1",
    ),
    "kpi_dropoff": (
        "Drop-off from intake to revenue per month, by shop",
        "PIVOT (SELECT period_start AS month_start, shop_name, dropoff_rate FROM marts.kpi_dropoff "
        "WHERE grain = 'month') ON shop_name USING first(dropoff_rate) ORDER BY month_start",
    ),
    "kpi_shipping_lag": (
        "Median hours from purchase to shipping per month, by shop",
        "PIVOT (SELECT period_start AS month_start, shop_name, median_lag_hours FROM marts.kpi_shipping_lag "
        "WHERE grain = 'month') ON shop_name USING first(median_lag_hours) ORDER BY month_start",
    ),
    "kpi_customers": (
        "New and returning customers per day",
        "SELECT period_start AS day, new_customers, returning_customers "
        "FROM marts.kpi_customers WHERE grain = 'day' ORDER BY 1",
    ),
}


def kpi_metadata(conn: duckdb.DuckDBPyConnection, lake: LakeResource, mart: str) -> dict[str, object]:
    """The headline figures of `mart` and its chart, as materialization metadata."""
    cursor = conn.execute(HEADLINES[mart])
    row = cursor.fetchone()
    metadata: dict[str, object] = {}
    if row is not None:
        for (name, *_), value in zip(cursor.description, row, strict=True):
            if value is not None:  # an empty mart has no figures
                metadata[name] = float(value) if isinstance(value, Decimal) else value
    title, query = CHARTS[mart]
    png = render_chart(conn.execute(query).df(), title)
    uri = lake.put(png, "commerce", "marts", "charts", f"{mart}.png")
    metadata["chart"] = dg.MetadataValue.url(uri) if lake.is_s3 else dg.MetadataValue.path(uri)
    inline = base64.b64encode(png).decode()
    metadata["chart_preview"] = dg.MetadataValue.md(f"![{title}](data:image/png;base64,{inline})")
    return metadata


def render_chart(frame, title: str) -> bytes:
    """A small line chart of `frame` (x axis first) as PNG bytes."""
    # Imported here: matplotlib costs a noticeable part of a second, and only the marts' runs need it.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.5), dpi=80, layout="constrained")
    ax = figure.subplots()
    frame = frame.set_index(frame.columns[0]).astype(float)
    if len(frame):
        frame.plot(ax=ax, marker="o")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
