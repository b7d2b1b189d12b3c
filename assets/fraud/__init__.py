"""Fraud decision data: checkout risk events and buyer master data from Kafka, deduplicated,
validated against market rules, enriched with SCD type 2 (as of the event's time) and type 1
dimensions, served per buyer in milliseconds and as point-in-time correct training sets."""
