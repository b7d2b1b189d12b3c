"""The code location loads as `dagster dev` loads it, with the asset graph we mean to ship."""

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_definitions_validate(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful for code location platform" in result.stdout + result.stderr


def test_clickstream_graph_groups_and_lineage():
    import importlib.util

    spec = importlib.util.spec_from_file_location("platform_definitions", ROOT / "platform" / "definitions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    graph = module.defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert {k: v for k, v in groups.items() if "clickstream" in k} == {
        "bronze_clickstream_events": "clickstream_bronze",
        "clickstream_history_import": "clickstream_bronze",
        "silver_clickstream_events": "clickstream_silver",
        "quarantine_clickstream_events": "clickstream_silver",
        "gold_clickstream_daily_metrics": "clickstream_gold",
        "gold_clickstream_product_funnel": "clickstream_gold",
    }
    silver = graph.get(next(k for k in graph.get_all_asset_keys() if k.to_user_string() == "silver_clickstream_events"))
    assert [p.to_user_string() for p in silver.parent_keys] == ["bronze_clickstream_events"]
    assert all(graph.get(k).description for k in graph.get_all_asset_keys() if "clickstream" in k.to_user_string())
