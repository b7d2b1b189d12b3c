"""Pseudonymization of personal data: a keyed hash (HMAC-SHA256) whose key comes from the environment."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from dagster import ConfigurableResource


def keyed_hash(key: bytes, value: object) -> str:
    """HMAC-SHA256 of `value` trimmed and case-folded, so 'Ann@X.org ' and 'ann@x.org' are the same person."""
    return hmac.new(key, str(value).strip().casefold().encode(), hashlib.sha256).hexdigest()


class PseudonymizerResource(ConfigurableResource):
    """Keyed hashes with `key` (PSEUDONYMIZATION_KEY). The same value always gives the same pseudonym,
    so pseudonyms join and count like the original; without the key they cannot be reversed or
    recomputed from a list of guessed names, emails or phone numbers."""

    key: str

    def pseudonyms(self, values: Iterable[object]) -> list[str | None]:
        """One pseudonym per value (`keyed_hash`; None and NaN stay None)."""
        key = self.key.encode()
        return [None if value is None or value != value else keyed_hash(key, value) for value in values]
