-- The product catalogue: current name, category and list price of each product, ordered or not.
select product_id, product_name, category, cast(price as decimal(12, 2)) as list_price, updated_at
from {{ latest('stg_products', 'product_id') }}
