-- Lag from purchase to shipping in hours, median and 90th percentile, by shop and month of purchase
-- (shipped orders only).
select
    date_trunc('month', f.order_date)::date as month_start,
    s.shop_id,
    s.shop_name,
    s.city,
    s.country,
    count(*) as shipped_orders,
    round(median(f.purchase_to_ship_hours), 2) as median_lag_hours,
    round(quantile_cont(f.purchase_to_ship_hours, 0.9), 2) as p90_lag_hours
from {{ ref('fact_orders') }} as f
join {{ ref('dim_shops') }} as s using (shop_id)
where f.shipped_at is not null
group by all
