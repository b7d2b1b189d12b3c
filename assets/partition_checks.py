"""One check result per date partition, also when one run covers a range of dates.

Dagster 1.13's `AssetCheckResult` has no `partition` argument: it records its result under the run's partition
when the run has exactly one, and under none when a single-run backfill covers a range, so every date of the
range shows its check as skipped. `AssetCheckEvaluation` does carry a partition: `per_partition` turns one
result per date into one evaluation per date, each tied to that date's latest materialization (what the UI
and `all_deps_blocking_checks_passed` compare against), and keeps a failed blocking check blocking.
The check's spec must be partitioned like its asset (`partitions_def=` on the spec or `@asset_check`).
"""

from collections.abc import Iterator, Mapping

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)


def per_partition(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    results: Mapping[str, dg.AssetCheckResult],
    check_key: dg.AssetCheckKey | None = None,
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output]:
    """Yield the results of one check, `results` holding one per partition key of the run. `check_key` names
    the check when the results do not (they carry asset_key and check_name, or the step has one check)."""
    if len(results) == 1 and context.has_partition_key:
        yield from results.values()  # Dagster attaches the run's partition itself
        return
    op_context = context.op_execution_context
    assets_def = op_context.assets_def
    first = next(iter(results.values()))
    if check_key is not None:
        key = check_key
    elif first.asset_key is not None and first.check_name is not None:
        key = dg.AssetCheckKey(first.asset_key, first.check_name)
    else:
        (key,) = assets_def.check_keys

    spec = assets_def.get_spec_for_check_key(key)
    for partition, result in results.items():
        yield dg.AssetCheckEvaluation(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=result.passed,
            metadata=result.metadata,
            severity=result.severity,
            description=result.description,
            blocking=spec.blocking,
            partition=partition,
            target_materialization_data=_latest_materialization(op_context.instance, key.asset_key, partition),
        )
    # The check's output, so the step counts the check as executed (its evaluations are the ones above).
    yield dg.Output(None, output_name=assets_def.get_output_name_for_asset_check_key(key))


def _latest_materialization(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    record = records[0]
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
    )
