-- One row per version of a customer (SCD type 2), built from the change times in the data: every staged
-- version (the latest of its customer on each processing date), valid from its source update time until
-- the next version's. Loading a range of dates in one run keeps every version, exactly as date by date.
-- Join facts on customer_id and purchased_at in [valid_from, valid_to).
with versions as (
    select * from {{ source('staging', 'stg_customers') }}
    qualify row_number() over (partition by customer_id, updated_at order by processing_date desc) = 1
)
select
    md5(customer_id::varchar || '|' || epoch_us(updated_at)::varchar) as customer_version_key,
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
    updated_at as valid_from,
    coalesce(
        lead(updated_at) over (partition by customer_id order by updated_at), timestamptz '9999-12-31 00:00:00+00'
    ) as valid_to,
    lead(updated_at) over (partition by customer_id order by updated_at) is null as is_current
from versions
