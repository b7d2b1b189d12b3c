"""Clickstream domain (seeds 004 and 003): user actions from Kafka, bronze -> silver -> gold."""
