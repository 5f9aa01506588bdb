"""The demo's synthetic worlds: the processes that generate the sample data, the live traffic
and, for the drift scenario, the shifted traffic together with its ground truth.

Each world is a known process, so the traffic generator can label the rows it sends (the
ground truth a retraining pipeline needs) and the drifted world has a real, learnable concept:
retraining on it gives a good model again. ``sample_data/make_datasets.py`` writes the
committed CSV files from these functions with fixed seeds.

Only numpy here (no pandas): the fleet builds request rows from these arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class World:
    name: str
    task: str  # classification | regression
    target: str
    features: tuple[str, ...]  # in the order the model sees them
    categorical: tuple[str, ...]
    generate: Callable[[int, np.random.Generator, bool], Columns]
    drifted_columns: tuple[str, ...] = ()  # the inputs the drift scenario shifts

    def rows(self, n: int, seed: int, *, drift: bool = False) -> Columns:
        return self.generate(n, np.random.default_rng(seed), drift)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------------------------
# churn: a telecom's customers; drift = a price rise and a new "unlimited" plan bringing new,
# short-tenure customers who call support more.

CHURN_PLANS = ("basic", "standard", "premium")
CHURN_NEW_PLAN = "unlimited"


def _churn(n: int, rng: np.random.Generator, drift: bool) -> Columns:
    if drift:
        tenure = np.clip(np.round(rng.gamma(1.5, 8.0, n)), 1, 72)
        charges = np.clip(rng.normal(95.0, 18.0, n), 18, 160)
        calls = rng.poisson(2.2, n)
        plan = rng.choice([*CHURN_PLANS, CHURN_NEW_PLAN], n, p=[0.25, 0.25, 0.10, 0.40])
    else:
        tenure = np.clip(np.round(rng.gamma(2.0, 14.0, n)), 1, 72)
        charges = np.clip(rng.normal(65.0, 18.0, n), 18, 130)
        calls = rng.poisson(1.3, n)
        plan = rng.choice(CHURN_PLANS, n, p=[0.5, 0.35, 0.15])
    usage = np.round(rng.lognormal(2.3, 0.6, n), 2)
    age = np.clip(np.round(rng.normal(42.0, 13.0, n)), 18, 85)
    effect = {"basic": 0.5, "standard": 0.0, "premium": -0.9, CHURN_NEW_PLAN: 0.8}
    unlimited = plan == CHURN_NEW_PLAN
    logit = 1.5 * (-1.6 + 1.8 * (tenure < 6) - 0.035 * tenure + 0.05 * (charges - 65.0) + 1.1 * (calls >= 3)
                   + 0.35 * calls - 0.02 * (age - 42.0) - 0.06 * (usage - 10.0)
                   - unlimited * 0.25 * (usage - 10.0) + np.vectorize(effect.__getitem__)(plan))
    if drift:  # the new customers churn less at the same scores, and more predictably
        logit = 1.7 * (logit - 2.2)
    churned = (rng.random(n) < _sigmoid(logit)).astype(np.int64)
    return {"tenure_months": tenure.astype(np.int64), "monthly_charges": np.round(charges, 2),
            "support_calls": calls.astype(np.int64), "data_usage_gb": usage, "age": age.astype(np.int64),
            "plan": plan.astype(object), "churned": churned}


# ---------------------------------------------------------------------------------------------
# fraud: card transactions.

FRAUD_CATEGORIES = ("grocery", "fuel", "online", "electronics", "travel")


def _fraud(n: int, rng: np.random.Generator, drift: bool) -> Columns:
    amount = np.round(rng.lognormal(3.6, 1.0, n), 2)
    hour = rng.choice(24, n, p=_hour_weights())
    category = rng.choice(FRAUD_CATEGORIES, n, p=[0.3, 0.15, 0.3, 0.1, 0.15])
    distance = np.round(rng.exponential(8.0, n), 1)
    card_present = (rng.random(n) < 0.6).astype(np.int64)
    recent = rng.poisson(2.0, n)
    effect = {"grocery": -0.8, "fuel": -0.4, "online": 0.8, "electronics": 1.4, "travel": 0.6}
    logit = (-4.3 + 0.9 * np.log(amount / 36.0) + 2.0 * (hour < 6) + 0.05 * distance
             - 1.8 * card_present + 0.45 * recent + np.vectorize(effect.__getitem__)(category)
             + 1.2 * ((category == "online") & (card_present == 0) & (amount > 100)))
    fraud = (rng.random(n) < _sigmoid(logit)).astype(np.int64)
    return {"amount": amount, "hour": hour.astype(np.int64), "merchant_category": category.astype(object),
            "distance_km": distance, "card_present": card_present, "txn_last_24h": recent.astype(np.int64),
            "is_fraud": fraud}


def _hour_weights() -> np.ndarray:
    w = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 3.5, 4, 4.2, 4.5,
                  5, 4.8, 4.5, 4.3, 4.5, 5, 5.2, 4.8, 4, 3.2, 2.4, 1.6])
    return w / w.sum()


# ---------------------------------------------------------------------------------------------
# demand: daily units sold of one product per store.

STORE_SIZES = ("small", "medium", "large")


def _demand(n: int, rng: np.random.Generator, drift: bool) -> Columns:
    price = np.round(rng.uniform(2.0, 12.0, n), 2)
    promo = (rng.random(n) < 0.25).astype(np.int64)
    dow = rng.integers(0, 7, n)
    temp = np.round(rng.normal(16.0, 8.0, n), 1)
    size = rng.choice(STORE_SIZES, n, p=[0.4, 0.4, 0.2])
    competitor = np.round(price * rng.uniform(0.8, 1.25, n), 2)
    size_f = np.vectorize({"small": 0.6, "medium": 1.0, "large": 1.7}.__getitem__)(size)
    mean = (140.0 * np.exp(-0.12 * price) * (1 + 0.6 * promo) * np.where(dow >= 5, 1.3, 1.0) * size_f
            * (1 + 0.012 * (temp - 16.0)) * (1 + 0.9 * (competitor - price) / price))
    units = np.round(np.maximum(0.0, mean + rng.normal(0.0, 5.0, n)), 1)
    return {"price": price, "promo": promo, "day_of_week": dow.astype(np.int64), "temperature_c": temp,
            "store_size": size.astype(object), "competitor_price": competitor, "units_sold": units}


WORLDS: dict[str, World] = {
    "churn": World("churn", "classification", "churned",
                   ("tenure_months", "monthly_charges", "support_calls", "data_usage_gb", "age", "plan"),
                   ("plan",), _churn, ("tenure_months", "monthly_charges", "support_calls", "plan")),
    "fraud": World("fraud", "classification", "is_fraud",
                   ("amount", "hour", "merchant_category", "distance_km", "card_present", "txn_last_24h"),
                   ("merchant_category",), _fraud),
    "demand": World("demand", "regression", "units_sold",
                    ("price", "promo", "day_of_week", "temperature_c", "store_size", "competitor_price"),
                    ("store_size",), _demand),
}

# Seeds of the committed sample files (sample_data/make_datasets.py).
SEEDS = {"train": 11, "reference": 12, "drifted": 13}
SIZES = {"train": 3000, "reference": 1500, "drifted": 1000}


def sample_data_dir() -> Path:
    """The repository's ``sample_data`` folder (``$MODELDECK_SAMPLE_DATA`` overrides)."""
    env = os.environ.get("MODELDECK_SAMPLE_DATA", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parent.parent.parent / "sample_data"


def train_script() -> Path:
    return sample_data_dir() / "pipeline" / "train.py"


def evaluate_script() -> Path:
    return sample_data_dir() / "pipeline" / "evaluate.py"


def to_csv_text(cols: Columns) -> str:
    """Columns -> CSV text with a header (numbers as their shortest repr)."""
    names = list(cols)
    lines = [",".join(names)]
    arrays = [cols[c].tolist() for c in names]
    for row in zip(*arrays):
        lines.append(",".join(_cell(v) for v in row))
    return "\n".join(lines) + "\n"


def _cell(v: object) -> str:
    if isinstance(v, float):
        return repr(round(v, 4))
    return str(v)
