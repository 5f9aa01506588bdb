"""core.drift: statistics against scipy, Evidently's rules, guards, profiles and their cache, output."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from modeldeck.core import drift
from modeldeck.core.drift import (
    JSON_COLUMN_KEYS,
    build_profile,
    compare,
    compare_frames,
    load_profile,
    render_text,
    result_to_json,
)
from modeldeck.core.errors import InputError, ModeldeckError
from modeldeck.tui.cli import run_drift

rng = np.random.default_rng(12345)


def col(result, name):
    return result.column(name)


# --------------------------------------------------------------------------- against scipy


def test_ks_matches_scipy_exact_small_reference():
    ref = pd.DataFrame({"x": rng.normal(size=300)})
    cur = pd.DataFrame({"x": rng.normal(0.2, size=120)})
    c = col(compare_frames(ref, cur), "x")
    expected = stats.ks_2samp(ref.x, cur.x)
    assert c.method == "ks"
    assert c.score == pytest.approx(expected.pvalue, abs=1e-12)
    assert c.p_value == c.score
    assert c.statistic == pytest.approx(expected.statistic, abs=1e-15)
    assert c.drifted == (expected.pvalue <= 0.05)


@pytest.mark.parametrize("n_ref,n_cur", [(20_000, 120), (900, 12_000), (15_000, 499)])
def test_ks_asymptotic_and_merged_path_match_scipy(n_ref, n_cur):
    ref = pd.DataFrame({"x": np.round(rng.normal(size=n_ref), 2)})  # ties on purpose
    cur = pd.DataFrame({"x": np.round(rng.normal(0.05, size=n_cur), 2)})
    c = col(compare_frames(ref, cur), "x")
    expected = stats.ks_2samp(ref.x, cur.x)
    assert c.method == "ks"
    assert abs(c.p_value - expected.pvalue) <= 1e-9
    assert c.statistic == expected.statistic


@pytest.mark.parametrize("ties", [False, True])
def test_merged_ks_and_wasserstein_equal_scipy(ties):
    for _ in range(5):
        a = rng.normal(size=int(rng.integers(1, 3000)))
        b = rng.normal(0.3, 2, size=int(rng.integers(1, 3000)))
        if ties:
            a, b = np.round(a, 1), np.round(b, 1)
        d, w = drift._merged_ks_w(np.sort(a), np.sort(b), True)
        assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-15)  # exact mode re-rounds d
        assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12, abs=1e-15)
        small_blocks = drift._wasserstein(np.sort(a), np.sort(b), block=37)
        assert small_blocks == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12, abs=1e-15)


def test_wasserstein_normed_by_reference_std():
    ref = pd.DataFrame({"x": rng.normal(10, 3, size=4000)})
    cur = pd.DataFrame({"x": rng.normal(10.5, 3, size=800)})
    c = col(compare_frames(ref, cur), "x")
    w = stats.wasserstein_distance(ref.x, cur.x)
    assert c.method == "wasserstein"
    assert c.statistic == pytest.approx(w, rel=1e-12)
    assert c.score == pytest.approx(w / np.std(ref.x), rel=1e-12)
    assert c.p_value is None
    assert c.drifted == (c.score >= 0.1)


def test_chisquare_matches_scipy_with_category_only_in_one_side():
    ref = pd.DataFrame({"c": rng.choice(["a", "b", "c"], size=600, p=[0.5, 0.3, 0.2])})
    cur_vals = list(rng.choice(["a", "b", "d"], size=520, p=[0.6, 0.3, 0.1]))
    cur = pd.DataFrame({"c": cur_vals})
    c = col(compare_frames(ref, cur), "c")
    keys = ["a", "b", "c", "d"]
    rc = ref.c.value_counts().reindex(keys, fill_value=0).to_numpy()
    cc = cur.c.value_counts().reindex(keys, fill_value=0).to_numpy()
    with np.errstate(all="ignore"):
        expected = stats.chisquare(cc, rc * (len(cur) / len(ref)))
    assert c.method == "chisquare"
    assert c.score == pytest.approx(expected.pvalue, abs=1e-12)
    assert c.drifted  # a category the reference never had: p = 0
    assert c.unseen_share == pytest.approx(np.mean(np.array(cur_vals) == "d"))


def test_chisquare_p_value_without_unseen_categories():
    ref = pd.DataFrame({"c": rng.choice(["a", "b", "c", "d"], size=900)})
    cur = pd.DataFrame({"c": rng.choice(["a", "b", "c", "d"], size=700)})
    c = col(compare_frames(ref, cur), "c")
    keys = ["a", "b", "c", "d"]
    rc = ref.c.value_counts().reindex(keys).to_numpy()
    cc = cur.c.value_counts().reindex(keys).to_numpy()
    assert c.score == pytest.approx(stats.chisquare(cc, rc * (700 / 900)).pvalue, abs=1e-12)
    assert c.drifted == (c.score < 0.05)


def test_z_test_formula():
    ref = pd.DataFrame({"b": rng.random(800) < 0.3})
    cur = pd.DataFrame({"b": rng.random(600) < 0.36})
    c = col(compare_frames(ref, cur), "b")
    n1, n2 = len(ref), len(cur)
    p1, p2 = ref.b.mean(), cur.b.mean()
    p = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    assert c.method == "z"
    assert c.kind == "categorical"
    assert c.score == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))), abs=1e-12)
    assert c.statistic == pytest.approx(z, abs=1e-12)  # share of values other than the smallest (False)


def test_z_test_identical_constant_is_one():
    c = col(compare_frames(pd.DataFrame({"b": [True] * 100}), pd.DataFrame({"b": [True] * 500})), "b")
    assert c.method == "z" and c.score == 1.0 and not c.drifted and c.status == "constant"


def test_jensenshannon_matches_scipy_natural_log():
    ref = pd.DataFrame({"c": rng.choice(list("abcde"), size=5000)})
    cur = pd.DataFrame({"c": rng.choice(list("abcdf"), size=700)})
    c = col(compare_frames(ref, cur), "c")
    keys = list("abcdef")
    rp = ref.c.value_counts().reindex(keys, fill_value=0).to_numpy() / len(ref)
    cp = cur.c.value_counts().reindex(keys, fill_value=0).to_numpy() / len(cur)
    assert c.method == "jensenshannon"
    assert c.score == pytest.approx(distance.jensenshannon(rp, cp), abs=1e-12)
    assert c.drifted == (c.score >= 0.1)


# --------------------------------------------------------------------------- Evidently's choices


@pytest.mark.parametrize(
    "n_ref,values,expected",
    [
        (1000, 6, "ks"),
        (1000, 5, "chisquare"),
        (1000, 3, "chisquare"),
        (1000, 2, "z"),
        (1001, 6, "wasserstein"),
        (1001, 5, "jensenshannon"),
        (1001, 2, "jensenshannon"),
    ],
)
def test_method_choice_for_float_columns(n_ref, values, expected):
    ref = pd.DataFrame({"x": (np.arange(n_ref) % values).astype(float)})
    cur = pd.DataFrame({"x": (np.arange(600) % values).astype(float)})
    c = col(compare_frames(ref, cur), "x")
    assert c.kind == "numerical"
    assert c.method == expected


def test_unique_values_counted_on_both_sides_and_nan_inf_dropped():
    # 3 values in the reference, 3 others in the current: 6 together -> ks, not chi-square
    ref = pd.DataFrame({"x": np.r_[np.arange(300) % 3, [np.nan, np.inf, -np.inf]].astype(float)})
    cur = pd.DataFrame({"x": (np.arange(300) % 3 + 3).astype(float)})
    c = col(compare_frames(ref, cur), "x")
    assert c.method == "ks"
    assert c.n_reference == 300
    assert c.missing_share_reference == pytest.approx(3 / 303)


@pytest.mark.parametrize("unique,kind", [(5, "categorical"), (10, "categorical"), (11, "numerical")])
def test_int_columns_kind_by_unique_values_in_current(unique, kind):
    ref = pd.DataFrame({"i": np.arange(2000) % 11})
    cur = pd.DataFrame({"i": np.arange(600) % unique})
    c = col(compare_frames(ref, cur), "i")
    assert c.kind == kind
    assert c.method == ("jensenshannon" if kind == "categorical" else "wasserstein")


def test_categorical_override_and_kinds_evidently_skips():
    ref = pd.DataFrame({
        "x": rng.normal(size=700), "o": pd.Series(rng.normal(size=700), dtype=object),
        "u": rng.integers(0, 30, 700).astype(np.uint8),
        "t": [f"id{i}" for i in range(700)],
        "d": pd.date_range("2024-01-01", periods=700, freq="h"),
    })
    cur = ref.sample(frac=1, random_state=1).reset_index(drop=True)
    res = compare_frames(ref, cur)
    assert {c.column: c.status for c in res.columns} == {
        "x": "ok", "o": "skipped", "u": "skipped", "t": "skipped", "d": "skipped"}
    assert res.n_columns == 1
    forced = compare_frames(ref, cur, categorical="x,u")
    assert col(forced, "x").kind == "categorical" and col(forced, "x").method == "chisquare"
    assert col(forced, "u").status == "ok"


def test_dataset_drift_at_half_of_columns():
    ref = pd.DataFrame({"a": rng.normal(size=800), "b": rng.normal(size=800)})
    cur = pd.DataFrame({"a": rng.normal(3, size=800), "b": ref.b.to_numpy()})
    res = compare_frames(ref, cur)
    assert (res.n_columns, res.n_drifted, res.drift_share, res.dataset_drift) == (2, 1, 0.5, True)


# --------------------------------------------------------------------------- guards and extras


def test_many_categories_in_a_small_window():
    ref = pd.DataFrame({"id": [f"u{i}" for i in range(20000)], "c": rng.choice(list("ab"), 20000)})
    cur = pd.DataFrame({"id": [f"u{i}" for i in range(0, 20000, 50)], "c": rng.choice(list("ab"), 400)})
    c = col(compare_frames(ref, cur, categorical=["id"]), "id")
    assert c.method == "chisquare" and c.status in ("ok", "drift") and 0 < c.p_value <= 1


def test_sample_size_guard():
    ref = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(list("abcd"), size=5000)})
    small = compare_frames(ref, ref.iloc[:29])
    assert {c.status for c in small.columns} == {"low_sample"}
    assert not any(c.drifted for c in small.columns) and small.n_columns == 0 and not small.dataset_drift
    mid = compare_frames(ref, pd.DataFrame({"x": rng.normal(size=200), "c": rng.choice(list("abcd"), 200)}))
    assert [c.method for c in mid.columns] == ["ks", "chisquare"]  # not wasserstein / jensenshannon
    assert "instead of" in col(mid, "x").message
    big = compare_frames(ref, pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(list("abcd"), 500)}))
    assert [c.method for c in big.columns] == ["wasserstein", "jensenshannon"]


def test_small_windows_use_a_permutation_chisquare():
    r = np.random.default_rng(3)
    ref = pd.DataFrame({"b": r.random(3000) < 0.5, "c": r.choice(list("abcdef"), 3000),
                        "x": r.integers(0, 3, 3000).astype(float)})
    cur = pd.DataFrame({"b": r.random(300) < 0.5, "c": r.choice(list("abcdef"), 300),
                        "x": r.integers(0, 3, 300).astype(float)})
    res = compare_frames(ref, cur)
    for name in ("b", "c", "x"):
        c = col(res, name)
        assert c.method == "chisquare"
        table = np.array([ref[name].value_counts().sort_index().to_numpy(),
                          cur[name].value_counts().sort_index().to_numpy()])
        expected = stats.chi2_contingency(table, correction=False)
        assert c.statistic == pytest.approx(expected.statistic, rel=1e-9)
        assert abs(c.p_value - expected.pvalue) < 0.05  # 2,000 permutations vs the asymptotic value
    again = compare_frames(ref.iloc[::-1], cur.iloc[::-1])
    assert [c.p_value for c in again.columns] == [c.p_value for c in res.columns]  # seeded by the data


def test_permutation_chisquare_catches_new_and_sparse_categories():
    ref = pd.DataFrame({"c": ["a"] * 5000 + ["b"] * 5000})
    new = col(compare_frames(ref, pd.DataFrame({"c": ["a"] * 45 + ["b"] * 45 + ["z"] * 10})), "c")
    assert new.drifted and new.p_value < 0.001 and new.unseen_share == pytest.approx(0.1)
    const = col(compare_frames(pd.DataFrame({"c": ["a"] * 10000}), pd.DataFrame({"c": ["a"] * 95 + ["z"] * 5})), "c")
    assert const.status == "constant" and const.drifted
    same = col(compare_frames(ref, pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50})), "c")
    assert not same.drifted and same.p_value > 0.5


def test_constant_reference_status():
    ref = pd.DataFrame({"k": np.full(2000, 7.0), "x": rng.normal(size=2000)})
    same = compare_frames(ref, pd.DataFrame({"k": np.full(600, 7.0), "x": rng.normal(size=600)}))
    assert col(same, "k").status == "constant" and not col(same, "k").drifted
    moved = compare_frames(ref, pd.DataFrame({"k": rng.normal(7, 1, 600), "x": rng.normal(size=600)}))
    k = col(moved, "k")
    assert k.status == "constant" and k.drifted and "no spread" in k.message
    assert k.method == "wasserstein"  # Evidently's score is kept for cross-checks
    assert moved.n_columns == 2


def test_bad_columns_get_error_status_and_others_are_computed():
    ref = pd.DataFrame({"good": rng.normal(size=600), "allnan": rng.normal(size=600),
                        "num": rng.normal(size=600), "txt": rng.choice(list("ab"), 600)})
    cur = pd.DataFrame({"good": ref.good.to_numpy()[::-1], "allnan": np.full(600, np.nan),
                        "num": ["1.5"] * 599 + ["oops"], "txt": rng.normal(size=600)})
    res = compare_frames(ref, cur)
    status = {c.column: c.status for c in res.columns}
    assert status == {"good": "ok", "allnan": "error", "num": "error", "txt": "error"}
    assert "no values" in col(res, "allnan").message and "allnan" in col(res, "allnan").message
    assert "non-numeric" in col(res, "num").message
    assert res.n_columns == 1
    ref_nan = compare_frames(pd.DataFrame({"a": [np.nan] * 40, "b": range(40)}),
                             pd.DataFrame({"a": range(40), "b": range(40)}))
    assert col(ref_nan, "a").status == "error" and "reference" in col(ref_nan, "a").message


def test_missing_shares_and_jump():
    ref = pd.DataFrame({"x": np.where(rng.random(2000) < 0.02, np.nan, rng.normal(size=2000))})
    cur = pd.DataFrame({"x": np.where(rng.random(1000) < 0.3, np.nan, rng.normal(size=1000))})
    c = col(compare_frames(ref, cur), "x")
    assert c.missing_share_reference == pytest.approx(ref.x.isna().mean())
    assert c.missing_share_current == pytest.approx(cur.x.isna().mean())
    assert c.missing_jump and "missing values jumped" in c.message
    assert c.n_current == cur.x.notna().sum()


def test_psi_numeric_by_hand():
    ref_vals = np.arange(1000, dtype=float)
    cur_vals = np.r_[np.arange(500, dtype=float), np.full(500, 2000.0)]
    c = col(compare_frames(pd.DataFrame({"x": ref_vals}), pd.DataFrame({"x": cur_vals})), "x")
    edges = np.unique(np.quantile(ref_vals, np.arange(1, 10) / 10))
    r = np.diff(np.r_[0, np.searchsorted(np.sort(ref_vals), edges), 1000]) / 1000
    k = np.diff(np.r_[0, np.searchsorted(np.sort(cur_vals), edges), 1000]) / 1000
    r, k = np.maximum(r, 1e-4), np.maximum(k, 1e-4)
    assert c.psi == pytest.approx(np.sum((k - r) * np.log(k / r)))
    assert c.psi_level == "alert"


def test_psi_duplicate_edges_merged_and_categorical_unseen_bin():
    ref = pd.DataFrame({"x": np.r_[np.zeros(900), np.arange(100.0)], "c": ["a"] * 500 + ["b"] * 500})
    cur = pd.DataFrame({"x": np.zeros(1000), "c": ["a"] * 500 + ["z"] * 500})
    res = compare_frames(ref, cur)
    assert col(res, "x").psi >= 0
    r = np.array([0.5, 0.5, 1e-4])
    k = np.array([0.5, 1e-4, 0.5])
    assert col(res, "c").psi == pytest.approx(np.sum((k - r) * np.log(k / r)))
    assert col(res, "c").unseen_share == 0.5


# --------------------------------------------------------------------------- whole-input errors


def test_whole_input_errors():
    ref = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    with pytest.raises(InputError, match="no shared columns"):
        compare_frames(ref, pd.DataFrame({"b": [1.0]}))
    with pytest.raises(InputError, match="empty"):
        compare_frames(ref, pd.DataFrame({"a": []}))
    with pytest.raises(InputError, match="'zz'"):
        compare_frames(ref, pd.DataFrame({"a": [1.0]}), columns=["zz"])
    with pytest.raises(InputError, match="'q'"):
        compare_frames(ref, pd.DataFrame({"a": [1.0]}), categorical=["q"])
    with pytest.raises(InputError, match="no rows"):
        build_profile(pd.DataFrame({"a": []}))
    with pytest.raises(InputError, match="twice"):
        compare_frames(ref, pd.DataFrame([[1.0, 2.0]], columns=["a", "a"]))
    assert issubclass(InputError, ModeldeckError)


def test_errors_are_one_line():
    with pytest.raises(InputError) as e:
        compare_frames(pd.DataFrame({"a": [1.0]}), pd.DataFrame({"b\nc": [1.0]}))
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- properties

frames = st.integers(min_value=0, max_value=2**32 - 1).map(
    lambda seed: _random_frame(np.random.default_rng(seed)))


def _random_frame(r: np.random.Generator) -> pd.DataFrame:
    n = int(r.choice([40, 120, 600, 1500]))
    return pd.DataFrame({
        "f": r.normal(size=n),
        "few": r.integers(0, 4, n).astype(float),
        "i": r.integers(0, 30, n),
        "c": r.choice(list("abcdef"), size=n),
        "b": r.random(n) < 0.4,
    })


FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(frames)
def test_identical_frames_never_drift(frame):
    res = compare_frames(frame, frame.copy())
    assert not res.dataset_drift
    assert not any(c.drifted for c in res.columns)
    assert all(c.psi is not None and c.psi == pytest.approx(0, abs=1e-12) for c in res.columns)


@FAST
@given(frames, frames)
def test_psi_is_never_negative(a, b):
    res = compare_frames(a, b)
    assert all(c.psi >= 0 for c in res.columns if c.psi is not None)


@FAST
@given(frames, frames, st.integers(0, 1000))
def test_row_order_does_not_matter(a, b, seed):
    one = result_to_json(compare_frames(a, b))
    two = result_to_json(compare_frames(a.sample(frac=1, random_state=seed),
                                        b.sample(frac=1, random_state=seed + 1)))
    for x, y in zip(one["columns"], two["columns"]):
        for k in JSON_COLUMN_KEYS:
            if isinstance(x[k], float):
                assert y[k] == pytest.approx(x[k], rel=1e-9, abs=1e-12), k
            else:
                assert x[k] == y[k], k
    assert one["dataset_drift"] == two["dataset_drift"]


@FAST
@given(frames, frames, st.floats(0.01, 0.5))
def test_nans_only_change_missing_shares(a, b, share):
    base = result_to_json(compare_frames(a, b))
    r = np.random.default_rng(0)
    holes = b.copy()
    extra = holes.sample(n=max(1, int(len(holes) * share)), random_state=1).copy()
    extra["f"] = np.nan
    extra["few"] = np.nan
    holes = pd.concat([holes, extra], ignore_index=True)
    holes = holes.iloc[r.permutation(len(holes))]
    with_nan = result_to_json(compare_frames(a, holes))
    for x, y in zip(base["columns"], with_nan["columns"]):
        if x["column"] not in ("f", "few"):
            continue
        for k in ("method", "drifted", "status", "n_current"):
            assert x[k] == y[k]
        for k in ("score", "statistic", "p_value", "psi"):
            if x[k] is None:
                assert y[k] is None
            else:
                assert y[k] == pytest.approx(x[k], rel=1e-9, abs=1e-12)
        assert y["missing_share_current"] > x["missing_share_current"]


# --------------------------------------------------------------------------- profiles and the cache


def _write_reference(tmp_path, n=3000):
    ref = pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(list("abc"), size=n),
                        "i": rng.integers(0, 4, n), "b": rng.random(n) < 0.5})
    path = tmp_path / "reference.csv"
    ref.to_csv(path, index=False)
    return ref, path


def test_profile_cache_roundtrip_and_key(tmp_path):
    ref, path = _write_reference(tmp_path)
    cache = tmp_path / "profiles"
    p1 = load_profile(path, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].name.startswith(drift.hashlib.sha256(path.read_bytes()).hexdigest())
    p2 = load_profile(path, cache_dir=cache)
    assert p2.sha256 == p1.sha256
    for name in p1.columns:
        a, b = p1.columns[name], p2.columns[name]
        assert (a.family, a.n_rows, a.n_missing, a.n_unique, a.std) == (b.family, b.n_rows, b.n_missing,
                                                                          b.n_unique, b.std)
        if a.family == "numeric":
            assert np.array_equal(a.values, b.values) and np.array_equal(a.edges, b.edges)
        else:
            assert a.categories == b.categories and np.array_equal(a.counts, b.counts)
    cur = ref.sample(700, random_state=3)
    assert result_to_json(compare(p1, cur)) == result_to_json(compare(p2, cur))
    assert not [f for f in cache.iterdir() if f.name.startswith(".tmp")]


def test_cache_hit_does_not_reread_reference(tmp_path, monkeypatch):
    _, path = _write_reference(tmp_path)
    cache = tmp_path / "profiles"
    load_profile(path, cache_dir=cache)
    from modeldeck.core import capture

    def boom(*a, **k):
        raise AssertionError("reference re-read")

    monkeypatch.setattr(capture, "read_table", boom)
    monkeypatch.setattr(drift, "build_profile", boom)
    assert load_profile(path, cache_dir=cache).columns["x"].values.size == 3000


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip", "empty"])
def test_corrupt_cache_is_ignored_and_rebuilt(tmp_path, damage):
    _, path = _write_reference(tmp_path)
    cache = tmp_path / "profiles"
    good = load_profile(path, cache_dir=cache)
    (file,) = list(cache.iterdir())
    data = file.read_bytes()
    if damage == "garbage":
        file.write_bytes(b"not a profile at all")
    elif damage == "truncate":
        file.write_bytes(data[: len(data) - 100])
    elif damage == "flip":
        file.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    else:
        file.write_bytes(b"")
    again = load_profile(path, cache_dir=cache)
    assert np.array_equal(again.columns["x"].values, good.columns["x"].values)
    assert drift.read_profile(file, good.sha256).sha256 == good.sha256  # rewritten whole


def test_cache_dir_defaults_to_xdg_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _, path = _write_reference(tmp_path, n=100)
    load_profile(path)
    assert list((tmp_path / "xdg" / "modeldeck" / "profiles").iterdir())


def test_profile_of_a_frame_and_unwritable_cache(tmp_path):
    ref = pd.DataFrame({"x": rng.normal(size=200)})
    blocker = tmp_path / "file"
    blocker.write_text("x")
    prof = load_profile(ref, cache_dir=blocker / "sub")  # cannot write: still works
    assert prof.columns["x"].values.size == 200


# --------------------------------------------------------------------------- output and the command


def test_json_shape():
    ref = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(list("ab"), 300)})
    out = result_to_json(compare_frames(ref, ref.iloc[:100]))
    assert list(out) == ["dataset_drift", "drift_share", "n_columns", "n_drifted", "columns"]
    assert all(tuple(c) == JSON_COLUMN_KEYS for c in out["columns"])
    assert {c["method"] for c in out["columns"]} <= set(drift.METHODS)
    json.dumps(out, allow_nan=False)


def test_the_drift_command(tmp_path):
    ref, ref_path = _write_reference(tmp_path)
    same = tmp_path / "same.parquet"
    ref.sample(800, random_state=0).to_parquet(same)
    moved = tmp_path / "moved.csv"
    shifted = ref.sample(800, random_state=0).copy()
    shifted["x"] += 2
    shifted["c"] = "z"
    shifted.to_csv(moved, index=False)
    out = io.StringIO()
    assert run_drift(str(ref_path), str(same), "json", None, None, out) == 0
    assert json.loads(out.getvalue())["dataset_drift"] is False
    out = io.StringIO()
    assert run_drift(str(ref_path), str(moved), "text", ["i"], ["x", "c", "i"], out) == 1
    text = out.getvalue()
    assert "DATASET DRIFT" in text and "wasserstein" in text
    with pytest.raises(InputError, match="nope.csv"):
        run_drift(str(ref_path), str(tmp_path / "nope.csv"), "text", None, None, io.StringIO())
    with pytest.raises(InputError, match="format"):
        run_drift(str(ref_path), str(same), "yaml", None, None, io.StringIO())


def test_render_text_lists_every_column():
    ref = pd.DataFrame({"alpha": rng.normal(size=300), "beta": rng.choice(list("ab"), 300)})
    text = render_text(compare_frames(ref, ref.iloc[:20]))
    assert "alpha" in text and "beta" in text and "low_sample" in text


def test_histograms_for_screens_are_the_psi_bins_and_top_categories() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(list("abcdefghijkl"), 5000)})
    cur = pd.DataFrame({"x": rng.normal(0.5, size=1000), "c": rng.choice(list("abcdefghijklmn"), 1000)})
    result = drift.compare_frames(ref, cur)
    assert "histogram" not in drift.result_to_json(result)["columns"][0]  # the command's JSON is as documented
    cols = {c["column"]: c for c in drift.result_to_json(result, histograms=True)["columns"]}
    x, c = cols["x"]["histogram"], cols["c"]["histogram"]
    assert len(x["labels"]) == len(x["reference"]) == len(x["current"]) == 10
    assert x["labels"][0].startswith("< ") and x["labels"][-1].startswith("≥ ")
    assert x["reference"] == pytest.approx([0.1] * 10, abs=1e-3)
    assert sum(x["current"][5:]) > 0.6  # shifted up by half a standard deviation
    assert c["labels"][-1] == "other (6)" and len(c["labels"]) == 9
    assert sum(c["reference"]) == pytest.approx(1) and sum(c["current"]) == pytest.approx(1)


def test_psi_of_a_binary_numeric_column_uses_one_bin_per_value() -> None:
    """Decile edges of a 0/1 column with 5% ones are all 0: quantile bins would say PSI 0."""
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"p": (rng.random(5000) < 0.05).astype(int)})
    cur = pd.DataFrame({"p": (rng.random(1000) < 0.4).astype(int)})
    col = drift.compare_frames(ref, cur).column("p")
    r, c = 0.05, 0.4
    assert col.psi == pytest.approx((c - r) * np.log(c / r) + ((1 - c) - (1 - r)) * np.log((1 - c) / (1 - r)),
                                    rel=0.15)
    assert col.psi >= 0.25 and col.histogram["labels"] == ["0", "1"]
