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
