#!/usr/bin/env bash
# The platform's main job on local defaults: a real Kafka broker, a replayed stream of user events,
# and `dagster dev` with the sensors running. Open http://127.0.0.1:3000 and watch the assets.
# Ctrl-C stops dagster dev (with its code servers and run workers) and the producer; `make stop` stops
# everything the demo started, Kafka and PostgreSQL included, by the ids it recorded (platform/procs.sh).
#   DEMO_EVENTS   events replayed at start (default 20000)
#   DEMO_RATE     events per second streamed afterwards (default 50; 0 to stop after the replay)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source platform/env.sh
py=.venv/bin/python

platform/kafka.sh start
echo "[demo] replaying ${DEMO_EVENTS:-20000} clickstream events into Kafka"
$py -m demo.clickstream --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --count "${DEMO_EVENTS:-20000}"
if [[ ${DEMO_RATE:-50} != 0 ]]; then
  echo "[demo] streaming ${DEMO_RATE:-50} events/s in the background (log: .local/demo-producer.log)"
  platform/procs.sh start demo-producer .local/demo-producer.log -- \
    $py -m demo.clickstream --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --count 10000000 \
      --rate "${DEMO_RATE:-50}" --seed 11
  trap 'platform/procs.sh stop demo-producer' EXIT
fi
# --- Loan-application risk features (assets/loans) ---------------------------------------
# 2007 lands as a batch file (loans_landing_sensor); 2008-2012 replay into Kafka (loans_kafka_sensor).
# Only on the first demo run: a second replay would be new applications, not a retry.
#   DEMO_LOANS   applications in 2007 (later years grow; default 2000)
if [[ ! -f $LANDING_ROOT/loan_applications/loan_applications_2007.csv ]]; then
  echo "[demo] loans: landing the 2007 file and replaying 2008-2012 applications into Kafka"
  $py -m demo.loans --years 2007 --per-year "${DEMO_LOANS:-2000}" --out "$LANDING_ROOT/loan_applications"
  $py -m demo.loans --years 2008-2012 --per-year "${DEMO_LOANS:-2000}" --bootstrap "$KAFKA_BOOTSTRAP_SERVERS"
fi
# --- end of loans --------------------------------------------------------------------------------
# --- Fraud decision data (assets/fraud) --------------------------------------------------
# Buyer master-data changes and checkout risk events (with duplicates, retries and irregular values)
# into Kafka; the fraud sensors build the dimensions, the decision dataset and the serving table.
# Only on the first demo run: a replay re-sends the same event ids, which the pipeline would dedupe.
#   DEMO_FRAUD_EVENTS   checkout risk events (default 20000), DEMO_FRAUD_BUYERS buyers (default 2000)
if [[ ! -f .local/demo-fraud.done ]]; then
  echo "[demo] fraud: producing buyer changes and ${DEMO_FRAUD_EVENTS:-20000} checkout risk events into Kafka"
  $py -m demo.fraud --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --events "${DEMO_FRAUD_EVENTS:-20000}" \
      --buyers "${DEMO_FRAUD_BUYERS:-2000}" && touch .local/demo-fraud.done
fi
# --- end of fraud --------------------------------------------------------------------------------

# --- Commerce warehouse (seeds 002 and 003; assets/warehouse, dbt/) -----------------------------------
# A real PostgreSQL source and landing files for the last 10 days; in the UI, backfill
# commerce_warehouse_job over those dates (or wait for its nightly schedule).
#   DEMO_ORDERS   orders generated (default 10000)
if platform/postgres.sh start; then
  if [[ ! -f .local/demo-warehouse.done ]]; then
    echo "[demo] warehouse: filling PostgreSQL and $LANDING_ROOT with 10 days of commerce data"
    $py -m demo.warehouse --orders "${DEMO_ORDERS:-10000}" --start "$(date -u -d '-10 days' +%F)" \
        --days 10 && touch .local/demo-warehouse.done
  fi
else
  echo "[demo] warehouse: PostgreSQL could not start (apt-get install postgresql-15); the other domains run on"
fi
# --- end of warehouse ----------------------------------------------------------------------------

echo "[demo] starting Dagster on http://127.0.0.1:${DAGSTER_PORT:-3000} (Ctrl-C stops it; 'make stop' stops everything)"
# In a session of its own: stopping it stops its code servers and run workers too, wherever they run.
trap 'platform/procs.sh stop dagster-dev demo-producer' EXIT
trap 'exit 130' INT TERM
platform/procs.sh start dagster-dev - -- .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}"
platform/procs.sh wait dagster-dev
