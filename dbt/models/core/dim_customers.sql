-- One row per version of a customer (SCD type 2): pseudonymized identity, address and city, and the
-- period in which that version was valid. Join facts on customer_id and purchased_at in [valid_from, valid_to).
select
    dbt_scd_id as customer_version_key,
    customer_id,
    first_name_hash,
    last_name_hash,
    email_hash,
    phone_hash,
    street_hash,
    postcode,
    city,
    country,
    created_at,
    dbt_valid_from as valid_from,
    coalesce(dbt_valid_to, timestamptz '9999-12-31 00:00:00+00') as valid_to,
    dbt_valid_to is null as is_current
from {{ ref('customers_snapshot') }}
