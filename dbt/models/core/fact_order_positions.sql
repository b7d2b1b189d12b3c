-- One row per order position (latest version): product, quantity and price; order intake of the
-- position is price x quantity. Partitioned by processing date: a run replaces the positions
-- changed on its dates.
{{ config(materialized='incremental', unique_key='position_id', incremental_strategy='delete+insert',
          tags=['partitioned']) }}
select
    p.position_id,
    p.order_id,
    p.product_id,
    p.quantity,
    cast(p.price as decimal(12, 2)) as price,
    cast(p.price * p.quantity as decimal(14, 2)) as order_intake,
    p.updated_at,
    p.processing_date
from {{ latest('stg_order_positions', 'position_id') }} as p
where {{ in_partition('p.processing_date') }}
