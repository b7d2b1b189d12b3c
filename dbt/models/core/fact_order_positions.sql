-- One row per order position (latest version) with the shop that sold it (its own, else its order's),
-- the order's business date and delivery, and what it contributes: order intake = price x quantity,
-- revenue = the same once the order is delivered, freight beside it. The KPIs per shop are computed from
-- here, so an order spanning several shops counts for each with its own positions. Partitioned by
-- processing date: a run replaces the positions changed on its dates, and those whose order changed.
{{ config(materialized='incremental', unique_key='position_id', incremental_strategy='delete+insert',
          tags=['partitioned']) }}
with positions as (
    select * from {{ latest('stg_order_positions', 'position_id') }}
),
orders as (
    select * from {{ latest('stg_orders', 'order_id') }}
),
changed as (
    select position_id from positions where {{ in_partition() }}
    union
    select p.position_id from positions as p join orders as o using (order_id) where {{ in_partition('o.processing_date') }}
)
select
    p.position_id,
    p.order_id,
    p.product_id,
    coalesce(p.shop_id, o.shop_id) as shop_id,
    o.customer_id,
    {{ business_date('o.purchased_at') }} as order_date,
    coalesce(o.delivered_at is not null, false) as is_delivered,
    p.quantity,
    cast(p.price as decimal(12, 2)) as price,
    cast(p.price * p.quantity as decimal(14, 2)) as order_intake,
    cast(case when o.delivered_at is not null then p.price * p.quantity else 0 end as decimal(14, 2)) as revenue,
    cast(coalesce(p.freight, 0) as decimal(12, 2)) as freight,
    p.updated_at,
    p.processing_date
from positions as p
join changed using (position_id)
left join orders as o using (order_id)
