-- Lag from purchase to hand-over to the carrier in hours (median and 90th percentile over shipped
-- orders) and late deliveries (delivered after the promised date, over delivered orders with a promise),
-- by shop, per day and month of purchase. An order spanning several shops counts for each of them.
-- Every calendar day has a row per shop: 0 orders, 0 hours, rate 0 where nothing was shipped or delivered.
with orders as (
    select f.*, s.shop_id as selling_shop
    from {{ ref('fact_orders') }} as f
    join (select distinct order_id, shop_id from {{ ref('fact_order_positions') }} where shop_id is not null) as s
        using (order_id)
)
{% for grain in ['day', 'month'] %}
select
    '{{ grain }}' as grain,
    date_trunc('{{ grain }}', d.date_day)::date as period_start,
    s.shop_id,
    s.shop_name,
    s.city,
    s.country,
    count(o.order_id) filter (where o.shipped_at is not null) as shipped_orders,
    coalesce(round(median(o.purchase_to_ship_hours), 2), 0) as median_lag_hours,
    coalesce(round(quantile_cont(o.purchase_to_ship_hours, 0.9), 2), 0) as p90_lag_hours,
    count(o.order_id) filter (where o.is_late is not null) as delivered_with_estimate,
    count(o.order_id) filter (where o.is_late) as late_deliveries,
    coalesce(round(late_deliveries / nullif(delivered_with_estimate, 0), 4), 0) as late_delivery_rate
from {{ calendar() }} as d
cross join {{ ref('dim_shops') }} as s
left join orders as o on o.order_date = d.date_day and o.selling_shop = s.shop_id
group by all
{% if not loop.last %}union all{% endif %}
{% endfor %}
