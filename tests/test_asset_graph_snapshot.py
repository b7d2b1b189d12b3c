"""A snapshot of the asset graph the code location ships: asset keys, groups, partitions, checks, deps,
code versions, automation conditions and freshness policies. An accidental change fails this test and shows
in the diff of tests/snapshots/asset_graph.json; an intended one is recorded with `make snapshot`
(`python -m tests.test_asset_graph_snapshot`), and the change to the JSON is reviewed with the code."""

import difflib
import importlib.util
import json
import sys
from pathlib import Path

import dagster as dg
from dagster._core.definitions.freshness import CronFreshnessPolicy, TimeWindowFreshnessPolicy

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "tests" / "snapshots" / "asset_graph.json"


def load_definitions() -> dg.Definitions:
    spec = importlib.util.spec_from_file_location("platform_definitions", ROOT / "platform" / "definitions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.defs


def describe_partitions(partitions_def: dg.PartitionsDefinition | None) -> str | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        start = partitions_def.start.strftime(partitions_def.fmt)
        end = partitions_def.end.strftime(partitions_def.fmt) if partitions_def.end else None
        return (
            f"time window '{partitions_def.cron_schedule}' {partitions_def.timezone} from {start}"
            + (f" to {end}" if end else "")
            + f", end offset {partitions_def.end_offset}"
        )
    return f"{type(partitions_def).__name__}: {partitions_def}"


def describe_condition(condition: dg.AutomationCondition | None) -> str | None:
    """The condition as one line, `label(child, ...)` down to the operands: stable across runs, one line in a diff."""
    if condition is None:
        return None
    name = condition.get_label() or condition.name
    children = [describe_condition(child) for child in condition.children]
    return f"{name}({', '.join(str(c) for c in children)})" if children else name


def describe_freshness(policy: dg.FreshnessPolicy | None) -> str | None:
    if policy is None:
        return None
    if isinstance(policy, TimeWindowFreshnessPolicy):
        warn = policy.warn_window.to_timedelta() if policy.warn_window else None
        return f"time window: fail after {policy.fail_window.to_timedelta()}, warn after {warn}"
    if isinstance(policy, CronFreshnessPolicy):
        return f"cron '{policy.deadline_cron}' {policy.timezone}, window {policy.lower_bound_delta}"
    return repr(policy)


def graph_snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    checks_by_asset: dict[str, list[dict]] = {}
    for check_key in graph.asset_check_keys:
        node = graph.get(check_key)
        checks_by_asset.setdefault(check_key.asset_key.to_user_string(), []).append(
            {
                "name": check_key.name,
                "blocking": node.blocking,
                "partitions": describe_partitions(node.partitions_def),
                "automation_condition": describe_condition(node.automation_condition),
            }
        )
    assets = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assets[name] = {
            "group": node.group_name,
            "partitions": describe_partitions(node.partitions_def),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "code_version": node.code_version,
            "automation_condition": describe_condition(node.automation_condition),
            "freshness_policy": describe_freshness(node.freshness_policy),
            "checks": sorted(checks_by_asset.get(name, []), key=lambda c: c["name"]),
        }
    return {"assets": dict(sorted(assets.items()))}


def render(snapshot: dict) -> str:
    return json.dumps(snapshot, indent=1, sort_keys=True) + "\n"


def test_asset_graph_matches_the_snapshot():
    current = render(graph_snapshot(load_definitions()))
    recorded = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    diff = "".join(
        difflib.unified_diff(recorded.splitlines(True), current.splitlines(True), "recorded", "current", n=2)
    )
    assert current == recorded, f"The asset graph changed; if intended, run `make snapshot`:\n{diff[:20000]}"


def test_every_dbt_asset_shows_its_business_description_and_column_docs():
    """The catalog shows dbt models and snapshots as it shows the Python assets: a business description from
    dbt/models/schema.yml (not the raw SQL) and a documented column schema."""
    graph = load_definitions().resolve_asset_graph()
    dbt_nodes = [graph.get(k) for k in graph.get_all_asset_keys() if "dbt" in graph.get(k).kinds]
    assert len(dbt_nodes) >= 10  # dimensions (customers SCD2 included), facts and the four marts
    for node in dbt_nodes:
        name = node.key.to_user_string()
        description = node.description or ""
        assert len(description) > 40 and "Raw SQL" not in description and "select " not in description.lower(), name
        schema = node.metadata.get("dagster/column_schema")
        assert isinstance(schema, dg.TableSchema) and schema.columns, name
        undocumented = [c.name for c in schema.columns if not c.description or c.type == "?"]
        assert not undocumented, (name, undocumented)


if __name__ == "__main__":
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(render(graph_snapshot(load_definitions())))
    print(f"wrote {SNAPSHOT.relative_to(ROOT)}", file=sys.stderr)
