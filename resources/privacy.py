"""Personal data kept out of what operators see: asset-check metadata, run logs and alerts.

Quarantine tables keep each row exactly as received (it must stay replayable), in storage that is
access-controlled like raw. Whatever is shown of a failing or quarantined row goes through here:
- a declared personal field (each domain declares its own: `PERSONAL_FIELDS` in its names module, the
  warehouse contracts' `personal`) becomes `masked:<12 hex>`, the start of its keyed pseudonym
  (PSEUDONYMIZATION_KEY): an operator can tell that two failing rows are the same person, and find that
  person's pseudonym in the analyst layers, without seeing who it is;
- a payload (a raw message or CSV line as received, whose fields may not even parse) is never shown,
  only its size and a keyed hash of its bytes, beside its reason and coordinates.
Without PSEUDONYMIZATION_KEY in the environment a random key of the process masks as well, but links nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Collection

import pandas as pd

from resources.pseudonymize import keyed_hash

# Columns that hold a message or line as received: shown only as size and hash.
PAYLOAD_COLUMNS = ("payload", "original")
_PROCESS_KEY = secrets.token_hex(32)


def _key() -> bytes:
    return (os.environ.get("PSEUDONYMIZATION_KEY") or _PROCESS_KEY).encode()


def _missing(value: object) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))  # type: ignore[arg-type]


def mask(value: object) -> str | None:
    """A personal value as `masked:<12 hex>` (the start of its keyed pseudonym); a missing value stays None."""
    return None if _missing(value) else "masked:" + keyed_hash(_key(), value)[:12]


def mask_payload(payload: bytes | str | None) -> str | None:
    """A payload as received, as `<size> bytes, hmac:<12 hex>` (a keyed hash of its exact bytes)."""
    if _missing(payload):
        return None
    data = payload.encode() if isinstance(payload, str) else bytes(payload)  # type: ignore[arg-type]
    return f"{len(data)} bytes, hmac:{hmac.new(_key(), data, hashlib.sha256).hexdigest()[:12]}"


def shown(column: object, value: object, personal: Collection[str] = ()) -> str | None:
    """One value of a failing row as an operator may see it: payloads hashed, personal fields masked."""
    if column in PAYLOAD_COLUMNS:
        return mask_payload(value)  # type: ignore[arg-type]
    if column in personal:
        return mask(value)
    return str(value)


def masked_rows(frame: pd.DataFrame, personal: Collection[str] = (), limit: int = 5) -> list[dict]:
    """Up to `limit` rows of `frame` for check metadata: values as text, `personal` columns masked, payload
    columns hashed; the reason and coordinates columns stay readable."""
    return [
        {str(column): shown(column, value, personal) for column, value in row.items()}
        for row in frame.head(limit).to_dict(orient="records")
    ]


def masked_failure_cases(cases: pd.DataFrame, personal: Collection[str] = (), limit: int = 10) -> list[dict]:
    """Pandera's failure cases (`column`, `check`, `failure_case`, `index`) for check metadata, the failing
    value masked when its column is personal or when the check is on whole rows (no single column)."""
    rows = []
    for row in cases.head(limit).to_dict(orient="records"):
        column = row.get("column")
        hidden = column in personal or not isinstance(column, str)
        rows.append(
            {str(k): (mask(v) if k == "failure_case" and hidden else shown(k, v, personal)) for k, v in row.items()}
        )
    return rows
