-- Order intake, revenue and freight by shop, location and period (day, week and month of purchase, by
-- the business date in the source's time zone), from the order positions: an order spanning several
-- shops counts for each shop with its own positions. Every calendar day has a row per shop, 0 without orders.
-- depends_on: {{ ref('fact_orders') }} (held back with the order facts when a test of theirs fails)
with positions as (
    select * from {{ ref('fact_order_positions') }} where order_date is not null
)
{% for grain in ['day', 'week', 'month'] %}
select
    '{{ grain }}' as grain,
    date_trunc('{{ grain }}', d.date_day)::date as period_start,
    s.shop_id,
    s.shop_name,
    s.city,
    s.country,
    count(distinct p.order_id) as orders,
    count(distinct p.order_id) filter (where p.is_delivered) as delivered_orders,
    coalesce(sum(p.order_intake), 0) as order_intake,
    coalesce(sum(p.revenue), 0) as revenue,
    coalesce(sum(p.freight), 0) as freight
from {{ calendar() }} as d
cross join {{ ref('dim_shops') }} as s
left join positions as p on p.order_date = d.date_day and p.shop_id = s.shop_id
group by all
{% if not loop.last %}union all{% endif %}
{% endfor %}
