"""The loan domain's names: its Kafka topic and consumer group, its landing folder and its tables.
Sensors and tools import them from here, not from the assets."""

TOPIC = "loans.applications"
CONSUMER_GROUP = "platform.loans.bronze"
# The folder under the landing root (LANDING_ROOT) where application files land.
LANDING_DIR = "loan_applications"
# Delta tables under the lake root (LAKE_ROOT).
RAW_FILES_DATASET = "raw/loan_application_files"
BRONZE_DATASET = "bronze/loan_applications"
CLEANED_DATASET = "silver/loan_applications"
QUARANTINE_DATASET = "quarantine/loan_applications"
FEATURES_DATASET = "features/loan_risk_features"
REGISTRY_DATASET = "features/loan_feature_registry"
# The environment variable that names the active feature version (read when the code location loads).
FEATURE_VERSION_ENV = "LOAN_FEATURE_VERSION"

# Fields that may identify an applicant (the title is free text): masked wherever a row is shown to
# operators (resources/privacy.py).
PERSONAL_FIELDS = ("zip_code", "loan_title")
