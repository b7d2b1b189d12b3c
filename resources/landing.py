"""Landing files: entity exports dropped as input/<entity>/<YYYY-MM-DD>/*.csv."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource


class LandingResource(ConfigurableResource):
    """The landing folder at `root` (LANDING_ROOT): one folder per entity and delivery date."""

    root: str = "data/input"

    def files(self, entity: str, date: str) -> list[Path]:
        folder = Path(self.root) / entity / date
        return sorted(folder.glob("*.csv")) if folder.is_dir() else []
