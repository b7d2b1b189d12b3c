-- New and returning customers by day and month of purchase, absolute and relative: a customer is new
-- in the period of their first order ever, and returning in any later period in which they order.
with first_orders as (
    select customer_id, min(order_date) as first_order_date from {{ ref('fact_orders') }} group by customer_id
)
{% for grain in ['day', 'month'] %}
select
    '{{ grain }}' as grain,
    date_trunc('{{ grain }}', f.order_date)::date as period_start,
    count(distinct f.customer_id) as customers,
    count(distinct f.customer_id) filter (
        where date_trunc('{{ grain }}', c.first_order_date) = date_trunc('{{ grain }}', f.order_date)
    ) as new_customers,
    customers - new_customers as returning_customers,
    round(new_customers / customers, 4) as new_share,
    round(returning_customers / customers, 4) as returning_share
from {{ ref('fact_orders') }} as f
join first_orders as c using (customer_id)
group by all
{% if not loop.last %}union all{% endif %}
{% endfor %}
