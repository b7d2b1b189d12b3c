-- One row per order (latest version): who bought when and where, its life cycle (approval, hand-over to
-- the carrier, delivery against the promised date, cancellation) and its totals over its positions:
-- order_intake = sum of price x quantity regardless of delivery; revenue = the same, only for delivered
-- orders; freight beside them. order_date is the purchase's local date in the source's time zone.
-- Partitioned by processing date: a run replaces the orders changed on its dates, and those whose
-- positions changed on them.
{{ config(materialized='incremental', unique_key='order_id', incremental_strategy='delete+insert',
          tags=['partitioned']) }}
with orders as (
    select * from {{ latest('stg_orders', 'order_id') }}
),
positions as (
    select * from {{ latest('stg_order_positions', 'position_id') }}
),
changed as (
    select order_id from orders where {{ in_partition() }}
    union
    select order_id from positions where {{ in_partition() }}
),
totals as (
    select
        order_id,
        sum(quantity) as items,
        cast(sum(price * quantity) as decimal(14, 2)) as order_intake,
        cast(sum(coalesce(freight, 0)) as decimal(14, 2)) as freight
    from positions group by order_id
)
select
    o.order_id,
    o.customer_id,
    o.shop_id,
    o.status,
    o.purchased_at,
    {{ business_date('o.purchased_at') }} as order_date,
    o.approved_at,
    o.shipped_at,
    o.delivered_at,
    o.estimated_delivery_at,
    o.cancelled_at,
    coalesce(t.items, 0) as items,
    coalesce(t.order_intake, 0) as order_intake,
    case when o.delivered_at is not null then coalesce(t.order_intake, 0) else 0 end as revenue,
    coalesce(t.freight, 0) as freight,
    o.delivered_at is not null as is_delivered,
    date_diff('second', o.purchased_at, o.shipped_at) / 3600.0 as purchase_to_ship_hours,
    o.delivered_at > o.estimated_delivery_at as is_late,
    date_diff('second', o.estimated_delivery_at, o.delivered_at) / 3600.0 as delivery_delay_hours,
    o.updated_at,
    o.processing_date
from orders as o
join changed using (order_id)
left join totals as t using (order_id)
