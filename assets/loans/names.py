"""The loan domain's names: its Kafka topic and consumer group, its landing folder and its tables.
Sensors and tools import them from here, not from the assets."""

TOPIC = "loans.applications"
CONSUMER_GROUP = "platform.loans.bronze"
LANDING_DIR = "landing/loan_applications"
RAW_FILES_DATASET = "raw/loan_application_files"
BRONZE_DATASET = "bronze/loan_applications"
CLEANED_DATASET = "silver/loan_applications"
QUARANTINE_DATASET = "quarantine/loan_applications"

# Fields that may identify an applicant (the title is free text): masked wherever a row is shown to
# operators (resources/privacy.py).
PERSONAL_FIELDS = ("zip_code", "loan_title")
