-- Shops with their location (city, country) and sales channel (own shop or franchise).
select shop_id, shop_name, city, country, city || ', ' || country as location, channel, updated_at
from {{ latest('stg_shops', 'shop_id') }}
