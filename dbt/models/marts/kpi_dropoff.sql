-- The drop-off from order intake to revenue by shop and month of purchase: the share of intake that
-- never became revenue (cancelled, lost or not yet delivered orders).
select
    date_trunc('month', f.order_date)::date as month_start,
    s.shop_id,
    s.shop_name,
    s.city,
    s.country,
    sum(f.order_intake) as order_intake,
    sum(f.revenue) as revenue,
    sum(f.order_intake) - sum(f.revenue) as dropped_intake,
    round(1 - sum(f.revenue) / nullif(sum(f.order_intake), 0), 4) as dropoff_rate
from {{ ref('fact_orders') }} as f
join {{ ref('dim_shops') }} as s using (shop_id)
group by all
