# Local defaults for every setting the platform reads from the environment. Source it; anything
# already set in the environment wins, so the same code runs against other endpoints by configuration.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The project's tools (dagster, dbt) come from its virtual environment.
export PATH="$root/.venv/bin:$PATH"
export KAFKA_PORT=${KAFKA_PORT:-9092}
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}
# Ingest runs per topic, each following its share of the partitions (p % INGEST_SHARDS): 1 on a laptop.
export INGEST_SHARDS=${INGEST_SHARDS:-1}
# No authentication on the laptop. A managed cluster: SASL_SSL with PLAIN or SCRAM-SHA-256/512 and a user;
# KAFKA_SSL_CAFILE when its certificates are not signed by a public CA. platform/kafka.sh reads the same
# mechanism, user and password to start a broker that requires them.
export KAFKA_SECURITY_PROTOCOL=${KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}
export KAFKA_SASL_MECHANISM=${KAFKA_SASL_MECHANISM:-}
export KAFKA_SASL_USERNAME=${KAFKA_SASL_USERNAME:-}
export KAFKA_SASL_PASSWORD=${KAFKA_SASL_PASSWORD:-}
export KAFKA_SSL_CAFILE=${KAFKA_SSL_CAFILE:-}
export LAKE_ROOT=${LAKE_ROOT:-$root/data/lake}
export DUCKDB_DATABASE=${DUCKDB_DATABASE:-$root/data/warehouse.duckdb}
export DAGSTER_HOME=${DAGSTER_HOME:-$root/.local/dagster}
# A development key only: production sets its own secret. Used for keyed hashes of personal data.
export PSEUDONYMIZATION_KEY=${PSEUDONYMIZATION_KEY:-local-development-key-not-secret}
# The commerce source database (platform/postgres.sh) and its landing folder input/<entity>/<date>/.
export POSTGRES_HOST=${POSTGRES_HOST:-127.0.0.1}
export POSTGRES_PORT=${POSTGRES_PORT:-5432}
export POSTGRES_DB=${POSTGRES_DB:-commerce}
export POSTGRES_USER=${POSTGRES_USER:-commerce}
export POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-commerce}
export LANDING_ROOT=${LANDING_ROOT:-$root/data/input}
# The warehouse's first processing date (a history import moves it back) and the source's time zone: timestamps
# without an offset are local times there, and business dates are local dates there. Read when the code location loads.
export COMMERCE_PARTITIONS_START=${COMMERCE_PARTITIONS_START:-2026-01-01}
export COMMERCE_SOURCE_TIMEZONE=${COMMERCE_SOURCE_TIMEZONE:-UTC}
# The loan feature version loan_risk_features computes (FEATURE_VERSIONS in assets/loans/logic.py), read when
# the code location loads; empty = the latest. Switching it shows the asset stale; materialize it to apply.
export LOAN_FEATURE_VERSION=${LOAN_FEATURE_VERSION:-}
# Clickstream event-time bounds (assets/clickstream/config.py), read when the code location loads: the first date
# partition, the earliest accepted event date (empty: the first partition) and how far an event may run ahead of
# the time it was received. A history import moves the first two back before the code location starts.
export CLICKSTREAM_PARTITIONS_START=${CLICKSTREAM_PARTITIONS_START:-2023-01-01}
export CLICKSTREAM_EARLIEST_EVENT_DATE=${CLICKSTREAM_EARLIEST_EVENT_DATE:-}
export CLICKSTREAM_MAX_CLOCK_SKEW=${CLICKSTREAM_MAX_CLOCK_SKEW:-1 hour}
export CLICKSTREAM_CONFIG=${CLICKSTREAM_CONFIG:-$root/assets/clickstream/clickstream.yaml}
# Fraud event-time bounds (assets/fraud/names.py), the same three: the first date partition of the decision data,
# the earliest accepted checkout or buyer-change time (empty: 2020-01-01, or the first partition if earlier) and
# how far a message's own time may run ahead of the broker's.
export FRAUD_PARTITIONS_START=${FRAUD_PARTITIONS_START:-2024-01-01}
export FRAUD_EARLIEST_EVENT_DATE=${FRAUD_EARLIEST_EVENT_DATE:-}
export FRAUD_MAX_CLOCK_SKEW=${FRAUD_MAX_CLOCK_SKEW:-5 minutes}
# How many decision dates (today included) a buyer change re-enriches at most, from the change's own date on.
export FRAUD_DIMENSION_LOOKBACK_DAYS=${FRAUD_DIMENSION_LOOKBACK_DAYS:-8}
# Alerts (sensors/alerts.py): always appended to ALERT_LOG; also posted to ALERT_WEBHOOK_URL (a Slack
# incoming webhook or any receiver of Slack-shaped JSON) when it is not empty. Links point at DAGSTER_UI_URL.
export ALERT_LOG=${ALERT_LOG:-$root/data/alerts/alerts.jsonl}
export ALERT_WEBHOOK_URL=${ALERT_WEBHOOK_URL:-}
export DAGSTER_UI_URL=${DAGSTER_UI_URL:-http://127.0.0.1:3000}
# Silver and gold count as stale after this many minutes without an update while Kafka holds pending events.
export FRESHNESS_MINUTES=${FRESHNESS_MINUTES:-10}
mkdir -p "$DAGSTER_HOME" "$(dirname "$DUCKDB_DATABASE")"
[ -f "$DAGSTER_HOME/dagster.yaml" ] && cmp -s "$root/platform/dagster.yaml" "$DAGSTER_HOME/dagster.yaml" \
  || cp "$root/platform/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
