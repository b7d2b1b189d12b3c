"""Market business rules (valid amount ranges, allowed currencies, risk-level thresholds), loaded from
versioned configuration (`config/markets.yaml`), never hard-coded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import yaml

DEFAULT_RULES_PATH = Path(__file__).parent / "config" / "markets.yaml"


@dataclass(frozen=True)
class MarketRules:
    path: str
    content_hash: str  # the code version of every asset that applies these rules
    version: int
    markets: dict[str, dict]

    def tables(self) -> dict[str, pa.Table]:
        """The rules as tables, so SQL joins them instead of the code spelling them out."""
        names = sorted(self.markets)
        rules = pa.table(
            {
                "market": names,
                "min_amount": [float(self.markets[m]["min_amount"]) for m in names],
                "max_amount": [float(self.markets[m]["max_amount"]) for m in names],
                "medium_threshold": [int(self.markets[m]["risk_thresholds"]["medium"]) for m in names],
                "high_threshold": [int(self.markets[m]["risk_thresholds"]["high"]) for m in names],
            }
        )
        pairs = [(m, c) for m in names for c in self.markets[m]["currencies"]]
        currencies = pa.table({"market": [m for m, _ in pairs], "currency": [c for _, c in pairs]})
        return {"market_rules": rules, "market_currencies": currencies}


def load_rules(path: str | Path = DEFAULT_RULES_PATH) -> MarketRules:
    """Read and validate the rules file; a malformed rule fails loudly here, before any data moves."""
    raw = Path(path).read_bytes()
    doc = yaml.safe_load(raw)
    markets = doc.get("markets") or {}
    for market, rule in markets.items():
        problems = []
        if not (isinstance(market, str) and market.isupper() and len(market) == 2):
            problems.append("market code must be two upper-case letters")
        if not rule.get("currencies") or not all(isinstance(c, str) and len(c) == 3 for c in rule["currencies"]):
            problems.append("currencies must be a non-empty list of ISO 4217 codes")
        if not 0 <= float(rule["min_amount"]) < float(rule["max_amount"]):
            problems.append("need 0 <= min_amount < max_amount")
        thresholds = rule.get("risk_thresholds") or {}
        if not 0 <= int(thresholds.get("medium", -1)) < int(thresholds.get("high", -1)) <= 1000:
            problems.append("need 0 <= risk_thresholds.medium < risk_thresholds.high <= 1000")
        if problems:
            raise ValueError(f"{path}: market {market!r}: " + "; ".join(problems))
    return MarketRules(
        path=str(path),
        content_hash=hashlib.sha256(raw).hexdigest()[:16],
        version=int(doc.get("version", 0)),
        markets=markets,
    )
