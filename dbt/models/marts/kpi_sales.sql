-- Order intake and revenue by shop, location and period (day, week and month of purchase).
-- Order intake: price x quantity of every order; revenue: the same for delivered orders only.
{% for grain in ['day', 'week', 'month'] %}
select
    '{{ grain }}' as grain,
    date_trunc('{{ grain }}', f.order_date)::date as period_start,
    s.shop_id,
    s.shop_name,
    s.city,
    s.country,
    count(*) as orders,
    count(*) filter (where f.is_delivered) as delivered_orders,
    sum(f.order_intake) as order_intake,
    sum(f.revenue) as revenue
from {{ ref('fact_orders') }} as f
join {{ ref('dim_shops') }} as s using (shop_id)
group by all
{% if not loop.last %}union all{% endif %}
{% endfor %}
