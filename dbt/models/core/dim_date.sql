-- Calendar days from the first to the last day the warehouse knows of (a purchase's business date or a
-- processing date of any entity), with the week and month they belong to. Days without orders included:
-- the KPI marts give each of them a row.
with known_days as (
    select order_date as d from {{ ref('fact_orders') }}
    {% for table in ['stg_shops', 'stg_products', 'stg_customers', 'stg_orders', 'stg_order_positions'] %}
    union all
    select distinct processing_date::date from {{ source('staging', table) }}
    {% endfor %}
),
bounds as (
    select min(d) as first_day, max(d) as last_day from known_days
)
select
    d::date as date_day,
    date_trunc('week', d)::date as week_start,
    date_trunc('month', d)::date as month_start,
    year(d) as year,
    isodow(d) as iso_weekday,
    isodow(d) >= 6 as is_weekend
from bounds, range(bounds.first_day, bounds.last_day + interval 1 day, interval 1 day) as t(d)
