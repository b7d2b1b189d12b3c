-- New and returning customers by day and month of purchase, absolute and relative: a customer is new
-- in the period of their first order ever, and returning in any later period in which they order.
-- Every calendar day has a row: 0 customers and shares 0 on a day without orders.
with first_orders as (
    select customer_id, min(order_date) as first_order_date from {{ ref('fact_orders') }} group by customer_id
),
orders as (
    select f.order_date, f.customer_id, c.first_order_date
    from {{ ref('fact_orders') }} as f
    join first_orders as c using (customer_id)
)
{% for grain in ['day', 'month'] %}
select
    '{{ grain }}' as grain,
    date_trunc('{{ grain }}', d.date_day)::date as period_start,
    count(distinct o.customer_id) as customers,
    count(distinct o.customer_id) filter (
        where date_trunc('{{ grain }}', o.first_order_date) = date_trunc('{{ grain }}', o.order_date)
    ) as new_customers,
    customers - new_customers as returning_customers,
    coalesce(round(new_customers / nullif(customers, 0), 4), 0) as new_share,
    coalesce(round(returning_customers / nullif(customers, 0), 4), 0) as returning_share
from {{ calendar() }} as d
left join orders as o on o.order_date = d.date_day
group by all
{% if not loop.last %}union all{% endif %}
{% endfor %}
