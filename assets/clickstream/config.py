"""The clickstream's configuration, read once when the code location loads:

- `assets/clickstream/clickstream.yaml` (or the file `CLICKSTREAM_CONFIG` names): accepted event names and platforms
  with their synonyms, the event identity, the funnel's stages, the import field mappings. Validated
  here: a mistake fails the code location's load with the file and the entry at fault.
- event-time bounds and the first partition, from the environment (Dagster needs the partitions when
  the definitions are built): `CLICKSTREAM_PARTITIONS_START` (default 2023-01-01),
  `CLICKSTREAM_EARLIEST_EVENT_DATE` (default: the first partition), `CLICKSTREAM_MAX_CLOCK_SKEW`
  (default `1 hour`: how far an event may run ahead of the time it was received). A live stream keeps
  the defaults; a history import sets them before the code location loads.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from assets.event_time import EventTimeBounds

DEFAULT_CONFIG_PATH = Path(__file__).parent / "clickstream.yaml"
# Silver's fields an import mapping may fill (`timestamp` becomes `event_datetime`).
MAPPABLE_FIELDS = ("timestamp", "event_name", "user_id", "platform", "product_name", "SKU", "event_id")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ClickstreamConfigError(ValueError):
    """The clickstream configuration is not valid; the message names the file and the entry."""


@dataclass(frozen=True)
class FunnelStage:
    name: str
    events: tuple[str, ...]
    optional: bool


@dataclass(frozen=True)
class ImportMapping:
    """Where an archive file keeps each of silver's fields: a CSV column or an NDJSON JSON path."""

    fields: dict[str, str]
    timestamp_unit: str | None  # None: timestamps are text; "s" / "ms": epoch seconds / milliseconds


@dataclass(frozen=True)
class ClickstreamConfig:
    path: str
    content_hash: str  # part of the code version of every asset that applies this configuration
    event_names: dict[str, list[str]]  # accepted name -> synonyms
    platforms: dict[str, list[str]]
    event_id_field: str | None
    funnel: tuple[FunnelStage, ...]
    imports: dict[str, ImportMapping]

    @property
    def accepted_event_names(self) -> list[str]:
        return list(self.event_names)

    @property
    def accepted_platforms(self) -> list[str]:
        return list(self.platforms)


def _synonyms(path, key: str, section) -> dict[str, list[str]]:
    if not isinstance(section, dict) or not section:
        raise ClickstreamConfigError(f"{path}: `{key}` must map each accepted value to a list of synonyms")
    seen: dict[str, str] = {}
    for name, synonyms in section.items():
        synonyms = synonyms or []
        if not isinstance(name, str) or not _NAME.match(name):
            raise ClickstreamConfigError(f"{path}: {key}: {name!r} is not a lower-case name (a-z, 0-9, _)")
        if not isinstance(synonyms, list) or not all(isinstance(s, str) and s for s in synonyms):
            raise ClickstreamConfigError(f"{path}: {key}.{name}: synonyms must be a list of non-empty strings")
        for value in [name, *synonyms]:
            if value in seen:
                raise ClickstreamConfigError(f"{path}: {key}: {value!r} means both {seen[value]!r} and {name!r}")
            seen[value] = name
    return {name: list(synonyms or []) for name, synonyms in section.items()}


def _funnel(path, section, event_names: dict) -> tuple[FunnelStage, ...]:
    if not isinstance(section, list) or len(section) < 2:
        raise ClickstreamConfigError(f"{path}: `funnel` must list at least two stages")
    stages = []
    for i, entry in enumerate(section):
        if not isinstance(entry, dict) or not isinstance(entry.get("stage"), str):
            raise ClickstreamConfigError(f"{path}: funnel[{i}] needs `stage` (a name) and `events` (a list)")
        events = entry.get("events") or [entry["stage"]]
        unknown = [e for e in events if e not in event_names]
        if unknown:
            raise ClickstreamConfigError(f"{path}: funnel stage {entry['stage']!r}: unknown event names {unknown}")
        optional = bool(entry.get("optional", False))
        if optional and i in (0, len(section) - 1):
            raise ClickstreamConfigError(
                f"{path}: funnel stage {entry['stage']!r}: the first and last stage are required"
            )
        stages.append(FunnelStage(entry["stage"], tuple(events), optional))
    if len({s.name for s in stages}) != len(stages):
        raise ClickstreamConfigError(f"{path}: funnel stage names must be unique")
    return tuple(stages)


def _imports(path, section) -> dict[str, ImportMapping]:
    mappings = {}
    for name, fields in (section or {}).items():
        fields = dict(fields or {})
        unit = fields.pop("timestamp_unit", None)
        if unit not in (None, "s", "ms"):
            raise ClickstreamConfigError(f"{path}: imports.{name}.timestamp_unit must be s or ms, not {unit!r}")
        unknown = sorted(set(fields) - set(MAPPABLE_FIELDS))
        if unknown:
            raise ClickstreamConfigError(f"{path}: imports.{name}: unknown fields {unknown}; known: {MAPPABLE_FIELDS}")
        missing = [f for f in ("timestamp", "event_name", "user_id") if f not in fields]
        if missing:
            raise ClickstreamConfigError(f"{path}: imports.{name}: the required fields {missing} are not mapped")
        mappings[name] = ImportMapping({k: str(v) for k, v in fields.items()}, unit)
    return mappings


def load_config(path: str | Path = DEFAULT_CONFIG_PATH) -> ClickstreamConfig:
    """Read and validate the clickstream configuration; a mistake fails loudly here, before data moves."""
    raw = Path(path).read_bytes()
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ClickstreamConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(doc, dict):
        raise ClickstreamConfigError(f"{path}: expected a mapping at the top level")
    event_names = _synonyms(path, "event_names", doc.get("event_names"))
    id_field = doc.get("event_id_field")
    if id_field is not None and not (isinstance(id_field, str) and re.match(r"^[A-Za-z_][\w.]*$", id_field)):
        raise ClickstreamConfigError(f"{path}: event_id_field must be null or a JSON path like `event_id`")
    return ClickstreamConfig(
        path=str(path),
        content_hash=hashlib.sha256(raw).hexdigest()[:16],
        event_names=event_names,
        platforms=_synonyms(path, "platforms", doc.get("platforms")),
        event_id_field=id_field,
        funnel=_funnel(path, doc.get("funnel"), event_names),
        imports=_imports(path, doc.get("imports")),
    )


CONFIG = load_config(os.environ.get("CLICKSTREAM_CONFIG") or DEFAULT_CONFIG_PATH)
# The defaults fit a live stream (assets/event_time.py); the earliest accepted date follows the first partition.
BOUNDS = EventTimeBounds.from_env(
    "CLICKSTREAM", partitions_start="2023-01-01", max_clock_skew="1 hour", error=ClickstreamConfigError
)
