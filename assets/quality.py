"""The platform's two promises about what arrives, checked the same way in every domain.

- **Nothing lost**: every message or row received is in the clean table, in the quarantine (with its
  reason) or counted as a duplicate. Blocking: a date that lost input is not served.
- **Quarantine rate**: warns when more than `QUARANTINE_RATE_THRESHOLD` of what arrived was quarantined
  (a source that changed its format, a producer with a bug).

Every domain reports both on its quarantine asset under these names, per date partition where the
asset is partitioned, with the same metadata: what was received, where it went, the rate and the
reasons. The stream reports them per micro-batch (metadata `scope: micro-batch`), a rebuild per date.
"""

import dagster as dg

NOTHING_LOST_CHECK = "nothing_lost_check"
QUARANTINE_RATE_CHECK = "quarantine_rate_check"
# The one threshold of every domain's quarantine_rate_check.
QUARANTINE_RATE_THRESHOLD = 0.05

NOTHING_LOST_DESCRIPTION = (
    "Everything received is in the clean table, in the quarantine with its reason, or a counted duplicate."
)
QUARANTINE_RATE_DESCRIPTION = f"Warns when more than {QUARANTINE_RATE_THRESHOLD:.0%} of what arrived is quarantined."


def nothing_lost(received: int, **accounted: int) -> tuple[bool, dict]:
    """(passed, metadata) of the nothing-lost accounting: `accounted` rows by where they went (for example
    clean=, quarantined=, duplicates=) against the `received` rows."""
    total = sum(accounted.values())
    metadata = {"received_rows": received, "accounted_rows": total} | {f"{k}_rows": v for k, v in accounted.items()}
    return total == received, metadata


def quarantine_rate(received: int, quarantined: int, reasons: dict[str, int] | None = None) -> tuple[bool, dict]:
    """(passed, metadata) of the quarantine rate of `quarantined` among `received`, with the reasons'
    counts (never the rows themselves: they may hold personal data)."""
    rate = quarantined / received if received else 0.0
    metadata: dict = {
        "quarantine_rate": rate,
        "threshold": QUARANTINE_RATE_THRESHOLD,
        "quarantined": quarantined,
        "received_rows": received,
    }
    if reasons is not None:
        metadata["reasons"] = dg.MetadataValue.json(reasons)
    return rate <= QUARANTINE_RATE_THRESHOLD, metadata


def quality_check_specs(asset: str, partitions_def: dg.PartitionsDefinition | None = None) -> list[dg.AssetCheckSpec]:
    """Both checks' specs on a domain's quarantine asset, for multi-assets that report them themselves."""
    return [
        dg.AssetCheckSpec(
            NOTHING_LOST_CHECK,
            asset=asset,
            blocking=True,
            description=NOTHING_LOST_DESCRIPTION,
            partitions_def=partitions_def,
        ),
        dg.AssetCheckSpec(
            QUARANTINE_RATE_CHECK, asset=asset, description=QUARANTINE_RATE_DESCRIPTION, partitions_def=partitions_def
        ),
    ]
