"""Materializations that a step reports for assets other than its own outputs (a streaming run refreshing
downstream partitions as each micro-batch lands), tagged with the provenance Dagster records for a step's
own outputs: the code version and the data versions of the inputs. Without it the UI's stale status
ignores them: a changed code version (a rule change) would not show the partitions stale."""

import dagster as dg

# Dagster writes these tags itself only for a step's outputs (dagster/_core/execution/plan/execute_step.py).
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    DEFAULT_DATA_VERSION,
    NULL_EVENT_POINTER,
    compute_logical_data_version,
    extract_data_version_from_entry,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)


def reported_materialization(
    context: dg.AssetExecutionContext,
    definition: dg.AssetsDefinition,
    asset_key: str,
    *,
    partition: str | None = None,
    metadata: dict | None = None,
    latest: dict | None = None,
) -> dg.AssetMaterialization:
    """A materialization of `asset_key` (`partition`), defined by `definition`, made by this step: tagged
    with the asset's code version (the run id when it has none, as Dagster does) and its inputs' current
    data versions (the same partition of an input partitioned with it, the latest of any other). Build it
    right before yielding it, after the materializations of its inputs were yielded. `latest`: a dict the
    caller keeps while it reports many partitions, in which the latest record of each input that is not
    partitioned with the asset is looked up once (those do not change while it reports)."""
    key = dg.AssetKey(asset_key)
    code_version = definition.code_versions_by_key.get(key) or context.run.run_id
    tags, inputs = {CODE_VERSION_TAG: code_version}, {}
    for parent in sorted(definition.asset_deps[key]):
        same_partitions = partition is not None and parent in definition.keys and definition.partitions_def
        if not same_partitions and latest is not None and parent in latest:
            record = latest[parent]
        else:
            record = context.instance.get_latest_data_version_record(
                parent, is_source=False, partition_key=partition if same_partitions else None
            )
            if not same_partitions and latest is not None:
                latest[parent] = record
        version = (extract_data_version_from_entry(record.event_log_entry) if record else None) or DEFAULT_DATA_VERSION
        inputs[parent] = version
        tags[get_input_data_version_tag(parent)] = version.value
        tags[get_input_event_pointer_tag(parent)] = str(record.storage_id) if record else NULL_EVENT_POINTER
    tags[DATA_VERSION_TAG] = compute_logical_data_version(code_version, inputs).value
    return dg.AssetMaterialization(key, partition=partition, metadata=metadata, tags=tags)
