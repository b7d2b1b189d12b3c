{# The latest version of each business key across all processing dates of a staging table. #}
{% macro latest(table, key) -%}
(select * from {{ source('staging', table) }}
 qualify row_number() over (partition by {{ key }} order by updated_at desc, processing_date desc) = 1)
{%- endmacro %}

{# Rows of the processing dates of the current Dagster partition (all rows when run without one). #}
{% macro in_partition(column='processing_date') -%}
{% if var('min_date', none) %}{{ column }} >= '{{ var("min_date") }}' and {{ column }} < '{{ var("max_date") }}'
{% else %}true{% endif %}
{%- endmacro %}

{# Use the custom schema name as is (commerce_core -> core is clearer for analysts). #}
{% macro generate_schema_name(custom_schema_name, node) -%}
{{ custom_schema_name if custom_schema_name else target.schema }}
{%- endmacro %}

{# The business date of a timestamp: its local date in the source's time zone (COMMERCE_SOURCE_TIMEZONE). #}
{% macro business_date(column) -%}
(timezone('{{ env_var("COMMERCE_SOURCE_TIMEZONE", "UTC") or "UTC" }}', {{ column }}))::date
{%- endmacro %}

{# Every calendar day of dim_date, for marts that must give each day a row (0 on a day without orders). #}
{% macro calendar() -%}
(select date_day from {{ ref('dim_date') }})
{%- endmacro %}
