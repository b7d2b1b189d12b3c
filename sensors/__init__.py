"""Sensors and jobs: Kafka offsets and new bronze data turned into runs."""
