"""The README says what the code does: its configuration table against platform/env.sh's defaults, and the
paths and commands it names against the repository."""

import os
import re
import subprocess

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _configuration_table() -> dict[str, str]:
    """variable -> the default the README states, for the rows whose default is a literal in backticks."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            default = re.fullmatch(r"`([^`]*)`", cells[1])
            for name in re.findall(r"`([A-Z_]+)`", cells[0]):
                rows[name] = default.group(1) if default else None
    return rows


def _env_sh_defaults() -> dict[str, str]:
    """platform/env.sh sourced in an environment without any of its settings."""
    table = _configuration_table()
    clean = {k: v for k, v in os.environ.items() if k not in table and not k.startswith(("KAFKA_", "POSTGRES_"))}
    sourced = subprocess.run(
        ["bash", "-c", "source platform/env.sh && env -0"], cwd=ROOT, env=clean, capture_output=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in sourced.decode().split("\0") if "=" in line)


def test_every_configuration_default_in_the_readme_is_what_env_sh_sets():
    table, env = _configuration_table(), _env_sh_defaults()
    assert len(table) >= 15
    for name, default in table.items():
        if name.startswith("DAGSTER_PG_"):  # the production instance's: not set on a laptop
            assert name not in env
            continue
        assert name in env, f"the README documents {name}, which platform/env.sh does not set"
        if default is None:
            continue
        value = env[name]
        # Paths are stated relative to the repository.
        relative = default.startswith(("data/", ".local/")) or (default and (ROOT / default).is_file())
        stated = str(ROOT / default) if relative else default
        assert value == stated, f"{name}: README says {default!r}, platform/env.sh sets {value!r}"


def test_every_setting_env_sh_exports_is_in_the_readme():
    exported = set(re.findall(r"^export ([A-Z_]+)=", (ROOT / "platform" / "env.sh").read_text(), re.M))
    internal = {
        "PATH",
        "KAFKA_PORT",
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_DB",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
    }
    missing = exported - internal - set(_configuration_table())
    assert not missing, f"platform/env.sh sets {sorted(missing)}, which the README's configuration table omits"


def test_paths_and_make_targets_the_readme_names_exist():
    named = re.findall(r"`((?:platform|assets|resources|sensors|bench|tests|deploy|demo)/[\w./-]+)`", README)
    # Files and folders (run tags such as platform/shard share the prefix: they have neither dot nor slash).
    for path in sorted(p for p in set(named) if "." in p or p.endswith("/")):
        assert (ROOT / path.rstrip("/")).exists(), f"the README names {path}, which does not exist"
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    for target in sorted(set(re.findall(r"`make ([a-z-]+)", README))):
        assert target in targets, f"the README names `make {target}`, which the Makefile lacks"


def test_the_readme_shows_the_commerce_contract_as_the_code_defines_it():
    from assets.warehouse.contracts import ENTITIES, contract_markdown

    for entity in ENTITIES.values():
        assert contract_markdown(entity) in README, f"the README's contract of {entity.name} differs from the code"
