-- Calendar days covering every purchase, with the week and month they belong to.
with bounds as (
    select min(purchased_at)::date as first_day, max(purchased_at)::date as last_day
    from {{ ref('fact_orders') }}
)
select
    d::date as date_day,
    date_trunc('week', d)::date as week_start,
    date_trunc('month', d)::date as month_start,
    year(d) as year,
    isodow(d) as iso_weekday,
    isodow(d) >= 6 as is_weekend
from bounds, range(bounds.first_day, bounds.last_day + interval 1 day, interval 1 day) as t(d)
