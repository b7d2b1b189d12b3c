-- The drop-off from order intake to revenue by shop, per day and month of purchase: the share of intake
-- that never became revenue (cancelled, lost or not yet delivered orders); 0 where there was no intake.
select
    grain,
    period_start,
    shop_id,
    shop_name,
    city,
    country,
    order_intake,
    revenue,
    order_intake - revenue as dropped_intake,
    case when order_intake = 0 then 0.0 else round(1 - revenue / order_intake, 4) end as dropoff_rate
from {{ ref('kpi_sales') }}
where grain in ('day', 'month')
