"""Landing files: exports dropped by source systems under one root (LANDING_ROOT), a local folder or
`s3://bucket/prefix`. The warehouse's entities arrive as input/<entity>/<YYYY-MM-DD>/*.csv; the loan
applications as loan_applications/*.csv."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dagster import ConfigurableResource

from resources.lake import _s3_client


@dataclass(frozen=True)
class LandedFile:
    """A landed file: its key under the root, and what changes when it is delivered again (size and
    modification stamp: mtime locally, the ETag on S3)."""

    key: str
    size: int
    stamp: str

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]


class LandingResource(ConfigurableResource):
    """The landing folder at `root` (LANDING_ROOT). On S3, credentials come from the standard AWS
    environment; `s3_endpoint_url` (or AWS_ENDPOINT_URL_S3) points at an S3-compatible server."""

    root: str = "data/input"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def landed(self, folder: str, suffix: str = ".csv") -> list[LandedFile]:
        """Every file under `folder` (recursively) whose name ends with `suffix`, sorted by key."""
        if self.is_s3:
            bucket, prefix = self._s3_location(folder)
            pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
            base = self._s3_location()[1]
            found = [
                LandedFile(o["Key"][len(base) :].lstrip("/"), int(o["Size"]), o["ETag"].strip('"'))
                for page in pages
                for o in page.get("Contents", [])
                if o["Key"].endswith(suffix)
            ]
            return sorted(found, key=lambda f: f.key)
        base = Path(self.root)
        paths = sorted((base / folder).rglob(f"*{suffix}")) if (base / folder).is_dir() else []
        return [LandedFile(str(p.relative_to(base)), p.stat().st_size, str(p.stat().st_mtime_ns)) for p in paths]

    def read(self, key: str) -> bytes:
        """The bytes of the landed file `key`."""
        if self.is_s3:
            bucket, name = self._s3_location(key)
            return self._client().get_object(Bucket=bucket, Key=name)["Body"].read()
        return (Path(self.root) / key).read_bytes()

    def put(self, data: bytes, key: str) -> None:
        """Land `data` as `key`, whole or not at all (a renamed temporary file locally, one PUT on S3)."""
        if self.is_s3:
            bucket, name = self._s3_location(key)
            self._client().put_object(Bucket=bucket, Key=name, Body=data)
            return
        target = Path(self.root) / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(data)
        partial.replace(target)

    def _s3_location(self, *parts: str) -> tuple[str, str]:
        bucket, _, prefix = self.root.removeprefix("s3://").partition("/")
        return bucket, "/".join(p.strip("/") for p in (prefix, *parts) if p)

    def _client(self):
        return _s3_client(self.s3_endpoint_url, self.s3_region)
