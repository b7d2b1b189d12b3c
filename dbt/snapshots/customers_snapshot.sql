{#- SCD type 2 history of each customer (address and city included): a new version whenever the
    customer's latest staged row has a newer updated_at; valid from that source update time. -#}
{% snapshot customers_snapshot %}
{{ config(unique_key='customer_id', strategy='timestamp', updated_at='updated_at') }}
select customer_id, first_name_hash, last_name_hash, email_hash, phone_hash, street_hash, postcode,
       city, country, created_at, updated_at
from {{ latest('stg_customers', 'customer_id') }}
{% endsnapshot %}
