"""The lake: bronze, silver, quarantine and gold files under one root (LAKE_ROOT, local disk by default)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import ConfigurableResource


class LakeResource(ConfigurableResource):
    """Files under `root`. Every write is atomic (temporary file, then rename), so readers never see
    a partial file, and every name is deterministic, so rewriting the same data replaces it."""

    root: str = "data/lake"

    def path(self, *parts: str) -> Path:
        return Path(self.root).joinpath(*parts)

    def _tmp(self) -> Path:
        # Temporary files live outside every dataset folder, so no glob over a dataset ever sees them.
        tmp = self.path("_tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp / f"{uuid.uuid4().hex}.part"

    def write_parquet(self, table: pa.Table, *parts: str) -> Path:
        target = self.path(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp()
        pq.write_table(table, tmp, compression="zstd")
        _fsync(tmp)
        os.replace(tmp, target)
        return target

    def write_json(self, value: object, *parts: str) -> None:
        target = self.path(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp()
        tmp.write_text(json.dumps(value, sort_keys=True))
        _fsync(tmp)
        os.replace(tmp, target)

    def read_json(self, *parts: str) -> object | None:
        target = self.path(*parts)
        return json.loads(target.read_text()) if target.exists() else None

    def delete(self, *parts: str) -> None:
        target = self.path(*parts)
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)

    def replace_dir(self, files: dict[str, pa.Table], *parts: str) -> None:
        """Make the folder `parts` hold exactly `files` (name -> table): new files first, then the
        files that are no longer part of it are removed."""
        folder = self.path(*parts)
        for name, table in files.items():
            self.write_parquet(table, *parts, name)
        if folder.exists():
            for stale in folder.iterdir():
                if stale.name not in files:
                    stale.unlink()

    def files(self, *parts: str, pattern: str = "*.parquet") -> list[Path]:
        folder = self.path(*parts)
        return sorted(folder.glob(pattern)) if folder.exists() else []


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
