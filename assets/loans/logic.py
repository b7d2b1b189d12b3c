"""Risk-score feature logic and its versions: small pure functions over numpy arrays.

Order. Features run over applications in `seq` order: application date, then arrival (line of the batch
file, Kafka offset of the stream; the topic has one partition so arrival order is total). A row's
features use only rows with a smaller or equal seq, i.e. rows that arrived before it.

Rows without a score (`risk_score_missing`) take no place in a window: they carry the features of the
rows before them (null before the first score) and do not change them.

- MA(n): mean of the last n scores, the current one included. The first n-1 scores have a partial
  window: the mean of the scores seen so far (score 1 -> itself, score 2 -> mean of two, ...).
  `risk_scores_seen` tells how full the window is.
- EMA50: span 50, alpha = 2/51. ema_1 = score_1 (seeded with the first score, no warm-up mean);
  ema_t = alpha * score_t + (1 - alpha) * ema_(t-1).

State. Everything a stream increment needs from the past is the last 100 scores, the last EMA value and
the count of scores seen (`window_state` rebuilds it from them): an increment costs O(its own rows),
whatever the length of the history. Integer scores and integer running sums make the moving averages
exact, so a stream split at any point gives bit-for-bit the numbers of one batch pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TAIL = 99  # the longest window (100) minus the current row
EMA_SPAN = 50
EMA_ALPHA = 2 / (EMA_SPAN + 1)


@dataclass
class WindowState:
    """The trailing state after the last processed row."""

    tail: list[int] = field(default_factory=list)  # last TAIL scores, oldest first
    ema: float | None = None  # EMA50 at the last score
    seen: int = 0  # scores seen so far
    last: dict[str, float] = field(default_factory=dict)  # every logic's value at the last score

    def to_json(self) -> dict:
        return {"tail": self.tail, "ema": self.ema, "seen": self.seen, "last": self.last}

    @classmethod
    def from_json(cls, doc: dict | None) -> WindowState:
        return cls(list(doc["tail"]), doc["ema"], int(doc["seen"]), dict(doc["last"])) if doc else cls()


def window_state(recent: np.ndarray, seen: int, ema: float | None) -> WindowState:
    """The state after a row, rebuilt from what the tables hold: the scores up to it (at least the last
    100, oldest first), how many scores were seen in all and the EMA at the last one. Bit for bit the
    state `compute_features` returns: each moving average is the same integer sum over the same count."""
    last = {}
    if seen:
        for logic, window in WINDOWS.items():
            count = min(seen, window)
            last[logic] = int(recent[-count:].sum()) / count
        if ema is not None:
            last["ema50"] = ema
    return WindowState(tail=[int(x) for x in recent[-TAIL:]], ema=ema, seen=seen, last=last)


def moving_average(scores: np.ndarray, prior: np.ndarray, seen_before: int, window: int) -> np.ndarray:
    """MA(window) for each score of `scores` (int64, no gaps), given the scores before them (`prior`, the
    last ones, oldest first) and how many scores were seen before in total."""
    full = np.concatenate([prior[len(prior) - min(len(prior), window - 1) :], scores]).astype(np.int64)
    sums = np.concatenate([[0], np.cumsum(full)])
    end = np.arange(len(full) - len(scores), len(full)) + 1
    start = np.maximum(end - window, 0)
    counts = np.minimum(seen_before + np.arange(1, len(scores) + 1), window)
    return (sums[end] - sums[start]) / counts


def exponential_average(scores: np.ndarray, previous: float | None, alpha: float = EMA_ALPHA) -> np.ndarray:
    """EMA of `scores` continuing from `previous` (None: seeded with the first score)."""
    if len(scores) == 0:
        return np.empty(0)
    seeded = previous is not None
    values = np.concatenate([[previous], scores]) if seeded else scores.astype(np.float64)
    # pandas' adjust=False recursion is y_t = ((1-a) y_(t-1) + a x_t) / ((1-a) + a), in C.
    out = pd.Series(values, dtype="float64").ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out[1:] if seeded else out


WINDOWS = {"sma50": 50, "sma100": 100}


def logic_values(logic: str, scores: np.ndarray, state: WindowState) -> np.ndarray:
    """The values of one logic at each of `scores`, continuing from `state`."""
    if logic in WINDOWS:
        return moving_average(scores, np.asarray(state.tail, np.int64), state.seen, WINDOWS[logic])
    if logic == "ema50":
        return exponential_average(scores, state.ema)
    raise KeyError(logic)


LOGIC_TEXT = {
    "sma50": "simple moving average: mean of Risk_Score over this row and the 49 scored rows before it "
    "(partial window: mean of the scores seen so far)",
    "sma100": "simple moving average: mean of Risk_Score over this row and the 99 scored rows before it "
    "(partial window: mean of the scores seen so far)",
    "ema50": "exponential moving average, span 50, alpha = 2/51, seeded with the first score: "
    "ema_t = alpha * score_t + (1 - alpha) * ema_(t-1)",
}


@dataclass(frozen=True)
class FeatureVersion:
    """One version of the feature table: which columns it has and which logic computes each."""

    version: int
    schema_version: int
    features: dict[str, str]  # column -> LOGIC key
    effective_from: str  # the application date from which this version computes the stream
    change: str
    # How a version starts: "continue" from the previous version's stored rows and window (a new
    # column), or "recompute" every row from the first application (a logic change: a backfill).
    start: str = "continue"

    @property
    def code_version(self) -> str:
        return f"loan-features-v{self.version}"


FEATURE_VERSIONS = {
    v.version: v
    for v in [
        FeatureVersion(1, 1, {"RiskScoreMA50": "sma50"}, "2007-01-01", "RiskScoreMA50 = MA50 (the first model)"),
        FeatureVersion(
            2,
            2,
            {"RiskScoreMA50": "sma50", "RiskScoreMA100": "sma100"},
            "2009-01-01",
            "new column RiskScoreMA100 = MA100; schema version 2",
        ),
        FeatureVersion(
            3,
            2,
            {"RiskScoreMA50": "ema50", "RiskScoreMA100": "sma100"},
            "2012-01-01",
            "RiskScoreMA50's logic becomes EMA50 under the same name; all rows recomputed",
            start="recompute",
        ),
    ]
}


def compute_features(
    risk_scores: pd.Series, version: FeatureVersion, state: WindowState | None = None
) -> tuple[pd.DataFrame, WindowState]:
    """Feature columns of `version` for rows in seq order (`risk_scores`: nullable ints, null = no score),
    continuing from `state`; returns them with `risk_scores_seen` and the state after the last row."""
    state = state or WindowState()
    present = risk_scores.notna().to_numpy()
    scores = risk_scores[present].to_numpy(dtype=np.int64)
    # Each row reads the value at its latest scored row: index among this chunk's scores, -1 if none yet.
    latest = np.cumsum(present) - 1
    values = {logic: logic_values(logic, scores, state) for logic in LOGIC_TEXT}
    columns = {}
    for name, logic in version.features.items():
        carried = np.concatenate([[state.last.get(logic, np.nan)], values[logic]])
        columns[name] = carried[latest + 1]
    frame = pd.DataFrame(
        {"risk_scores_seen": state.seen + np.cumsum(present, dtype=np.int64), **columns},
        index=risk_scores.index,
    )
    after = WindowState(
        tail=[int(x) for x in np.concatenate([np.asarray(state.tail, np.int64), scores])[-TAIL:]],
        ema=float(values["ema50"][-1]) if len(scores) else state.ema,
        seen=state.seen + len(scores),
        last={k: float(v[-1]) for k, v in values.items()} if len(scores) else dict(state.last),
    )
    return frame, after
