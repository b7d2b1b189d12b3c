"""Commerce warehouse (seeds 002 and 003): orders, customers, products and shops from a PostgreSQL
source and from landing files, through raw and PII-safe staging into a dbt star schema and KPI marts."""
