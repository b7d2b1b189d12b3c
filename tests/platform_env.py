"""The code location as a deployment loads it: platform/definitions.py, its resources resolved from an
environment (EnvVar is read when a resource is initialized, not at import)."""

import importlib.util
import os
from collections.abc import Mapping
from unittest import mock

import dagster as dg

from tests.conftest import ROOT


def load_definitions() -> dg.Definitions:
    spec = importlib.util.spec_from_file_location("platform_definitions", ROOT / "platform" / "definitions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.defs


def resolved_resource(defs: dg.Definitions, key: str, env: Mapping[str, str]):
    """The resource `key` of `defs` with its configuration read from `env` (and nothing else)."""
    resource = (defs.resources or {})[key]
    with mock.patch.dict(os.environ, env, clear=True):
        return resource.process_config_and_initialize()
