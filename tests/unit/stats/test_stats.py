"""Tests for xaimed.stats.compare: metrics against hand counts, tests against scipy and by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from xaimed.report.generalise_figures import compare_shifts
from xaimed.shift.corruptions import IN_DOMAIN
from xaimed.stats.compare import (
    METHOD_EXTRA,
    adjust_p,
    benjamini_hochberg,
    compare_methods,
    compare_models,
    fold_metrics,
    holm,
    paired_tests,
    paired_ttest,
)
from xaimed.stats.paired import corrected_ttest, mean_ci
from xaimed.stats.quality import LOCALISATION_METRICS, compare_methods_on

MODEL_CONTRACT = ["dataset", "metric", "model_a", "model_b", "n", "mean_diff", "t", "p"]
METHOD_CONTRACT = ["dataset", "model", "class", "method_a", "method_b", "n", "mean_diff", "t", "p"]
CONTRACT_TAIL = ["p_adjusted", "family"]

# --- holm -------------------------------------------------------------------------------


def test_holm_textbook_example():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    got = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_is_monotone_in_raw_p():
    got = holm([0.6, 0.7, 0.2])  # 0.2*3=0.6, 0.6*2=1.2->1, 0.7*1 -> 1
    np.testing.assert_allclose(got, [1.0, 1.0, 0.6])
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20)
    adj = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    assert np.all(adj >= p) and np.all(adj <= 1)


def test_holm_nan_kept_and_not_counted():
    got = holm([0.01, np.nan, 0.04, 0.03, 0.005])
    assert np.isnan(got[1])
    np.testing.assert_allclose(got[[0, 2, 3, 4]], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm([np.nan, np.nan])).all()
    assert holm([]).shape == (0,)


# --- paired_ttest -----------------------------------------------------------------------

A = [1.0, 2.0, 3.0, 5.0]
B = [0.5, 2.5, 1.0, 2.0]


def test_paired_ttest_matches_scipy_and_hand_formula():
    mean_diff, t, p = paired_ttest(A, B)
    ref = sps.ttest_rel(A, B)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    d = [x - y for x, y in zip(A, B, strict=True)]  # 0.5, -0.5, 2, 3
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    assert mean_diff == pytest.approx(1.25)
    assert t == pytest.approx(mean / (sd / math.sqrt(n)))
    assert p == pytest.approx(2 * sps.t.sf(abs(t), df=n - 1))
    # sign follows a - b
    assert paired_ttest(B, A)[1] == pytest.approx(-t)


def test_paired_ttest_drops_incomplete_pairs():
    got = paired_ttest([*A, np.nan, 9.0], [*B, 1.0, np.nan])
    np.testing.assert_allclose(got, paired_ttest(A, B))


def test_paired_ttest_degenerate_cases():
    md, t, p = paired_ttest([1.0], [0.0])
    assert md == 1.0 and np.isnan(t) and np.isnan(p)
    assert all(np.isnan(paired_ttest([], [])))
    assert paired_ttest([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == (0.0, 0.0, 1.0)
    assert paired_ttest([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]) == (1.0, math.inf, 0.0)
    assert paired_ttest([1.0, 2.0], [3.0, 4.0]) == (-2.0, -math.inf, 0.0)


# --- fold_metrics -----------------------------------------------------------------------


def _mann_whitney_auc(pos_scores, neg_scores) -> float:
    """AUROC by counting ordered (positive, negative) pairs, ties count half."""
    wins = sum((p > q) + 0.5 * (p == q) for p in pos_scores for q in neg_scores)
    return wins / (len(pos_scores) * len(neg_scores))


def _predictions() -> pd.DataFrame:
    names3 = ["a", "b", "c"]
    label = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    probs = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.3, 0.6, 0.1],
            [0.2, 0.5, 0.3],
            [0.1, 0.8, 0.1],
            [0.2, 0.1, 0.7],
            [0.5, 0.1, 0.4],
        ]
    )
    three = pd.DataFrame(
        {
            "dataset": "tri",
            "model": "m",
            "fold": 0,
            "image_id": [f"t{i}" for i in range(6)],
            "label": label,
            "label_name": [names3[i] for i in label],
            "pred": pred,
            "pred_name": [names3[i] for i in pred],
            # prob columns deliberately not in label order: mapping goes by class name
            "prob_c": probs[:, 2],
            "prob_a": probs[:, 0],
            "prob_b": probs[:, 1],
        }
    )
    pos = [0.9, 0.4, 0.6, 0.3, 0.8]
    binary = pd.DataFrame(
        {
            "dataset": "bin",
            "model": "m",
            "fold": [0, 0, 0, 0, 0],
            "image_id": [f"b{i}" for i in range(5)],
            "label": [1, 0, 1, 0, 0],
            "pred": [1, 0, 0, 0, 1],
            "prob_neg": [1 - x for x in pos],
            "prob_pos": pos,
        }
    )
    one_class = binary.iloc[[1, 3]].assign(fold=1)  # fold 1 lacks the positive class
    binary = pd.concat([binary, one_class], ignore_index=True)
    names2 = ["neg", "pos"]
    binary["label_name"] = [names2[i] for i in binary["label"]]
    binary["pred_name"] = [names2[i] for i in binary["pred"]]
    # concatenated datasets with different classes: each has NaN in the other's prob_ columns
    return pd.concat([three, binary], ignore_index=True), probs, pos


def test_fold_metrics_against_hand_counts():
    preds, probs, pos = _predictions()
    fm = fold_metrics(preds).set_index(["dataset", "model", "fold"])
    assert list(fm.index) == [("bin", "m", 0), ("bin", "m", 1), ("tri", "m", 0)]

    tri = fm.loc[("tri", "m", 0)]
    assert tri["n_images"] == 6
    assert tri["accuracy"] == pytest.approx(4 / 6)
    # per-class recall a 1/2, b 2/2, c 1/2; F1 a 0.5, b 0.8 (P=2/3, R=1), c 2/3 (P=1, R=1/2)
    assert tri["balanced_accuracy"] == pytest.approx(2 / 3)
    assert tri["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    label = np.array([0, 0, 1, 1, 2, 2])
    ovr = [_mann_whitney_auc(probs[label == k, k], probs[label != k, k]) for k in range(3)]
    assert tri["auroc_macro"] == pytest.approx(np.mean(ovr))

    b = fm.loc[("bin", "m", 0)]
    assert b["accuracy"] == pytest.approx(3 / 5)
    # neg: TP2 FP1 FN1 -> F1 2/3; pos: TP1 FP1 FN1 -> F1 1/2 (unweighted: supports are 3, 2)
    assert b["f1_macro"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert b["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert b["auroc_macro"] == pytest.approx(_mann_whitney_auc([0.9, 0.6], [0.4, 0.3, 0.8]))
    assert np.isnan(fm.loc[("bin", "m", 1), "auroc_macro"])
    assert fm.loc[("bin", "m", 1), "accuracy"] == 1.0


# --- compare_models ---------------------------------------------------------------------


def _fold_metrics_table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for dataset, models in [("d1", ["b", "a", "c"]), ("d2", ["y", "x"])]:
        for model in models:
            for fold in range(4):
                if model == "c" and fold == 3:
                    continue  # model c lacks a fold: pairs with c have n = 3
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "fold": fold,
                        "accuracy": rng.uniform(0.6, 0.9),
                        "f1_macro": rng.uniform(0.5, 0.9),
                    }
                )
    return pd.DataFrame(rows)


def test_compare_models_pairs_families_and_pvalues():
    fm = _fold_metrics_table()
    res = compare_models(fm)
    assert len(res) == 2 * 3 + 2 * 1
    assert res["family"].value_counts().to_dict() == {
        "d1/accuracy": 3,
        "d1/f1_macro": 3,
        "d2/accuracy": 1,
        "d2/f1_macro": 1,
    }
    d1acc = res[res["family"] == "d1/accuracy"]
    assert list(zip(d1acc["model_a"], d1acc["model_b"], strict=True)) == [
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
    ]
    assert list(d1acc["n"]) == [4, 3, 3]

    # recompute a vs c on accuracy directly
    a = fm[(fm.dataset == "d1") & (fm.model == "a")].set_index("fold")["accuracy"]
    c = fm[(fm.dataset == "d1") & (fm.model == "c")].set_index("fold")["accuracy"]
    joined = pd.concat([a, c], axis=1, join="inner")
    ref = sps.ttest_rel(joined.iloc[:, 0], joined.iloc[:, 1])
    row = d1acc.iloc[1]
    assert row["p"] == pytest.approx(ref.pvalue)
    assert row["t"] == pytest.approx(ref.statistic)
    assert row["mean_diff"] == pytest.approx((joined.iloc[:, 0] - joined.iloc[:, 1]).mean())

    # Holm within the family of 3: smallest p times 3; single-test family unchanged
    i = d1acc["p"].idxmin()
    assert d1acc.loc[i, "p_adjusted"] == pytest.approx(min(1.0, 3 * d1acc.loc[i, "p"]))
    single = res[res["dataset"] == "d2"]
    np.testing.assert_allclose(single["p_adjusted"], single["p"])
    assert list(single["model_a"]) == ["x", "x"]


def test_compare_models_is_deterministic_under_row_order():
    fm = _fold_metrics_table()
    shuffled = fm.sample(frac=1, random_state=3)
    pd.testing.assert_frame_equal(compare_models(fm), compare_models(shuffled))


# --- compare_methods --------------------------------------------------------------------


def _scores(repeats: bool = False) -> pd.DataFrame:
    """k-fold: each image in one fold; ``repeats`` (cv: predefined): both folds explain the
    same six images."""
    rng = np.random.default_rng(2)
    rows = []
    for fold in (0, 1):
        for i in range(6):
            pred_name = "pos" if i < 3 else "neg"
            label_name = "pos" if i in (0, 1, 3) else "neg"  # some misclassified
            for method in ("m2", "m1", "m3"):
                if method == "m3" and i in (0, 4):
                    continue  # m3 explained fewer images
                rows.append(
                    {
                        "dataset": "d",
                        "model": "net",
                        "fold": fold,
                        "method": method,
                        "image_id": f"img{i if repeats else i + 6 * fold}",
                        "label_name": label_name,
                        "pred_name": pred_name,
                        "confidence_increase": rng.normal(),
                        "road": rng.normal(),
                    }
                )
    return pd.DataFrame(rows)


def test_compare_methods_pairs_shared_images_per_predicted_class():
    scores = _scores()
    res = compare_methods(scores)
    assert len(res) == 2 * 3  # 2 predicted classes x 3 method pairs
    assert res["family"].value_counts().to_dict() == {"d/net/neg": 3, "d/net/pos": 3}
    pos = res[res["class"] == "pos"].set_index(["method_a", "method_b"])
    assert list(pos.index) == [("m1", "m2"), ("m1", "m3"), ("m2", "m3")]
    # predicted 'pos' = images 0..2 in 2 folds; m3 lacks image 0 -> 4 shared pairs
    assert pos.loc[("m1", "m2"), "n"] == 6
    assert pos.loc[("m1", "m3"), "n"] == 4

    sub = scores[scores["pred_name"] == "pos"]
    w = sub.pivot(index=["fold", "image_id"], columns="method", values="confidence_increase")
    shared = w[["m1", "m3"]].dropna()
    ref = sps.ttest_rel(shared["m1"], shared["m3"])
    assert pos.loc[("m1", "m3"), "p"] == pytest.approx(ref.pvalue)
    assert pos.loc[("m1", "m3"), "mean_diff"] == pytest.approx((shared["m1"] - shared["m3"]).mean())
    np.testing.assert_allclose(pos["p_adjusted"], holm(pos["p"]))

    road = compare_methods(scores, value="road")
    assert not np.allclose(road["t"], res["t"])


def test_compare_methods_counts_an_image_of_several_repeats_once():
    """Repeats explain the same images: methods are paired within each repeat, then each
    image counts once with its mean over the repeats that scored both methods."""
    scores = _scores(repeats=True)
    pos = compare_methods(scores).query("`class` == 'pos'").set_index(["method_a", "method_b"])
    sub = scores[scores["pred_name"] == "pos"]
    w = sub.pivot(index=["fold", "image_id"], columns="method", values="confidence_increase")
    per_image = w[["m1", "m3"]].dropna().groupby(level="image_id").mean()
    assert pos.loc[("m1", "m2"), "n"] == 3 and pos.loc[("m1", "m3"), "n"] == 2
    ref = sps.ttest_rel(per_image["m1"], per_image["m3"])
    assert pos.loc[("m1", "m3"), "p"] == pytest.approx(ref.pvalue)
    diff = (per_image["m1"] - per_image["m3"]).mean()
    assert pos.loc[("m1", "m3"), "mean_diff"] == pytest.approx(diff)
    # the same as the mean over images of the within-repeat differences
    within = (w["m1"] - w["m3"]).dropna().groupby(level="image_id").mean()
    assert diff == pytest.approx(within.mean())


def test_compare_methods_rejects_duplicate_pairing_keys():
    scores = _scores()
    with pytest.raises(ValueError):
        compare_methods(pd.concat([scores, scores.iloc[:1]]))


# --- Benjamini-Hochberg and the adjustment switch ---------------------------------------


def test_benjamini_hochberg_textbook_example():
    # sorted 0.005, 0.01, 0.03, 0.04 times m/i = 4, 2, 4/3, 1 -> 0.02, 0.02, 0.04, 0.04
    got = benjamini_hochberg([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.02, 0.04, 0.04, 0.02])
    # step-up: a larger raw p can lower the adjusted p of a smaller one
    np.testing.assert_allclose(benjamini_hochberg([0.04, 0.045]), [0.045, 0.045])


def test_benjamini_hochberg_against_scipy_and_nan():
    rng = np.random.default_rng(4)
    p = rng.uniform(size=25) ** 2
    np.testing.assert_allclose(benjamini_hochberg(p), sps.false_discovery_control(p))
    got = benjamini_hochberg([0.01, np.nan, 0.04, 0.03, 0.005])
    assert np.isnan(got[1])
    np.testing.assert_allclose(got[[0, 2, 3, 4]], [0.02, 0.04, 0.04, 0.02])
    assert benjamini_hochberg([]).shape == (0,)


def test_adjust_p_by_name():
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(adjust_p(p, "holm"), holm(p))
    np.testing.assert_allclose(adjust_p(p, "bh"), benjamini_hochberg(p))
    with pytest.raises(ValueError, match="bonferroni"):
        adjust_p(p, "bonferroni")


# --- the added columns of the comparison tables ------------------------------------------


def test_compare_models_keeps_the_contract_columns_first():
    res = compare_models(_fold_metrics_table())
    assert list(res.columns[:10]) == MODEL_CONTRACT + CONTRACT_TAIL
    for column in ("ci_low", "cohens_dz", "p_wilcoxon", "t_nb", "p_nb", "p_nb_adjusted"):
        assert column in res.columns
    assert (res["adjust"] == "holm").all()
    assert res.groupby("family")["family_size"].first().to_dict() == {
        "d1/accuracy": 3,
        "d1/f1_macro": 3,
        "d2/accuracy": 1,
        "d2/f1_macro": 1,
    }


def test_compare_models_nadeau_bengio_uses_the_fold_sizes():
    fm = _fold_metrics_table()
    # d1: 4 folds of 10, 10, 10, 20 test images of 50 -> n_test/n_train per fold, averaged
    sizes = {0: 10, 1: 10, 2: 10, 3: 20}
    fm["n_images"] = fm["fold"].map(sizes)
    res = compare_models(fm)
    ratio = np.mean([10 / 40, 10 / 40, 10 / 40, 20 / 30])
    d1acc = res[res["family"] == "d1/accuracy"].set_index(["model_a", "model_b"])
    assert d1acc["test_train_ratio"].to_numpy() == pytest.approx([ratio] * 3)
    a = fm[(fm.dataset == "d1") & (fm.model == "a")].set_index("fold")["accuracy"]
    b = fm[(fm.dataset == "d1") & (fm.model == "b")].set_index("fold")["accuracy"]
    t_nb, p_nb, se = corrected_ttest(a, b, ratio)
    row = d1acc.loc[("a", "b")]
    assert (row["t_nb"], row["p_nb"]) == pytest.approx((t_nb, p_nb))
    ref_w = sps.wilcoxon(a, b)
    assert (row["wilcoxon_w"], row["p_wilcoxon"]) == pytest.approx((ref_w.statistic, ref_w.pvalue))
    ref_ci = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ref_ci.low, ref_ci.high))
    assert (row["ci_low_nb"], row["ci_high_nb"]) == pytest.approx(mean_ci(a - b, scale=se))
    d = a - b
    assert row["cohens_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    np.testing.assert_allclose(d1acc["p_nb_adjusted"], holm(d1acc["p_nb"]))
    np.testing.assert_allclose(d1acc["p_wilcoxon_adjusted"], holm(d1acc["p_wilcoxon"]))
    # without n_images, equal folds: 1 / (k - 1)
    plain = compare_models(_fold_metrics_table())
    assert plain.loc[plain["dataset"] == "d1", "test_train_ratio"].iloc[0] == pytest.approx(1 / 3)


def test_compare_models_benjamini_hochberg_and_alpha():
    fm = _fold_metrics_table()
    res = compare_models(fm, adjust="bh", alpha=0.10)
    d1acc = res[res["family"] == "d1/accuracy"]
    np.testing.assert_allclose(d1acc["p_adjusted"], benjamini_hochberg(d1acc["p"]))
    assert (res["adjust"] == "bh").all()
    narrow = res["ci_high"] - res["ci_low"]
    wide = compare_models(fm)["ci_high"] - compare_models(fm)["ci_low"]
    assert (narrow < wide).all()  # a 90 % interval is narrower than a 95 % one


def test_compare_methods_added_columns():
    scores = _scores()
    res = compare_methods(scores)
    assert list(res.columns[:11]) == METHOD_CONTRACT + CONTRACT_TAIL
    assert "t_nb" not in res.columns  # images are not resampled training sets
    pos = res[res["class"] == "pos"].set_index(["method_a", "method_b"])
    sub = scores[scores["pred_name"] == "pos"]
    w = sub.pivot(index=["fold", "image_id"], columns="method", values="confidence_increase")
    shared = w[["m1", "m3"]].dropna()
    row = pos.loc[("m1", "m3")]
    ref = sps.wilcoxon(shared["m1"], shared["m3"])
    assert (row["wilcoxon_w"], row["p_wilcoxon"]) == pytest.approx((ref.statistic, ref.pvalue))
    ci = sps.ttest_rel(shared["m1"], shared["m3"]).confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
    np.testing.assert_allclose(pos["p_wilcoxon_adjusted"], holm(pos["p_wilcoxon"]))
    assert (res["family_size"] == 3).all()


# --- the one engine: paired_tests, and every table honouring adjust and alpha ------------


def _long(rng: np.random.Generator) -> pd.DataFrame:
    """Two blocks, four levels, eight units; level 'w' is the reference; a few values
    missing, so pairs differ in n."""
    rows = [
        {"block": block, "level": level, "unit": unit, "value": rng.normal(shift, 1.0)}
        for block in ("b1", "b2")
        for shift, level in enumerate(("w", "x", "y", "z"))
        for unit in range(8)
    ]
    long = pd.DataFrame(rows)
    long.loc[[3, 12, 45], "value"] = np.nan
    return long


def _complete(long, block, a, b):
    wide = long[long["block"] == block].pivot(index="unit", columns="level", values="value")
    both = wide[[a, b]].dropna()
    return both[a].to_numpy(), both[b].to_numpy()


def test_paired_tests_against_scipy():
    long = _long(np.random.default_rng(7))
    res = paired_tests(long, ["block"], "level", "unit", "value", adjust="bh", alpha=0.10)
    assert len(res) == 2 * 6 and list(res["level_a"][:3]) == ["w", "w", "w"]
    for row in res.itertuples():
        a, b = _complete(long, row.block, row.level_a, row.level_b)
        ref = sps.ttest_rel(a, b)
        assert row.n == len(a) and row.mean_diff == pytest.approx(np.mean(a - b))
        assert (row.t, row.p) == pytest.approx((ref.statistic, ref.pvalue))
        ci = ref.confidence_interval(0.90)
        assert (row.ci_low, row.ci_high) == pytest.approx((ci.low, ci.high))
        w = sps.wilcoxon(a, b)
        assert (row.wilcoxon_w, row.p_wilcoxon) == pytest.approx((w.statistic, w.pvalue))
        assert row.cohens_dz == pytest.approx(np.mean(a - b) / np.std(a - b, ddof=1))
    for _, family in res.groupby("family"):
        assert len(family) == 6 and (family["family_size"] == 6).all()
        np.testing.assert_allclose(family["p_adjusted"], sps.false_discovery_control(family["p"]))
        np.testing.assert_allclose(
            family["p_wilcoxon_adjusted"], sps.false_discovery_control(family["p_wilcoxon"])
        )
    assert "t_nb" not in res.columns  # no test_train_ratio: units are no folds


def test_paired_tests_against_a_reference_with_nadeau_bengio():
    long = _long(np.random.default_rng(8))
    res = paired_tests(
        long, ["block"], ["level"], "unit", "value", reference="w", test_train_ratio=lambda g: 0.25
    )
    assert list(res.columns[:3]) == ["block", "level", "n"]
    assert list(res["level"]) == ["x", "y", "z"] * 2
    for row in res.itertuples():
        a, b = _complete(long, row.block, row.level, "w")  # mean_diff = level - reference
        d, k = a - b, len(a)
        assert (row.t, row.p) == pytest.approx(tuple(sps.ttest_rel(a, b)))
        t_nb = d.mean() / math.sqrt(d.var(ddof=1) * (1 / k + 0.25))
        assert row.t_nb == pytest.approx(t_nb)
        assert row.p_nb == pytest.approx(2 * sps.t.sf(abs(t_nb), k - 1))
        assert row.test_train_ratio == 0.25
    for _, family in res.groupby("family"):
        np.testing.assert_allclose(family["p_nb_adjusted"], holm(family["p_nb"]))


def test_paired_tests_say_why_a_table_is_empty(caplog):
    long = _long(np.random.default_rng(9))
    with caplog.at_level("WARNING", logger="xaimed.stats.compare"):
        res = paired_tests(long, ["block"], ["level"], "unit", "value", reference="none")
    assert res.empty and res.attrs["empty"].startswith("no pairs to compare: no level beside")
    assert "b1: no level none to test against; skipped" in caplog.text
    one = paired_tests(long[long["level"] == "w"], ["block"], "level", "unit", "value")
    assert one.empty and "fewer than two levels in every block" in one.attrs["empty"]
    with pytest.raises(ValueError, match="bonferroni"):
        paired_tests(long, ["block"], "level", "unit", "value", adjust="bonferroni")


def _shift_metrics() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = [
        {
            "dataset": "d",
            "model": "m",
            "cv": "kfold",
            "fold": fold,
            "shift": shift,
            "severity": severity,
            "n_images": 10,
            **{metric: rng.uniform() for metric in ("accuracy", "f1_macro", "ece", "brier")},
        }
        for fold in range(5)
        for shift, severity in [(IN_DOMAIN, 0), ("blur", 1), ("blur", 5), ("noise", 3)]
    ]
    return pd.DataFrame(rows)


def _quality_scores() -> pd.DataFrame:
    scores = _scores()
    rng = np.random.default_rng(6)
    for metric in LOCALISATION_METRICS:
        scores[metric] = rng.uniform(size=len(scores))
    return scores


COMPARISONS = {
    "compare_models": lambda **kw: compare_models(_fold_metrics_table(), **kw),
    "compare_methods": lambda **kw: compare_methods(_scores(), **kw),
    "compare_methods_on": lambda **kw: compare_methods_on(
        _quality_scores(), LOCALISATION_METRICS, **kw
    ),
    "compare_shifts": lambda **kw: compare_shifts(_shift_metrics(), **kw),
}


@pytest.mark.parametrize("name", list(COMPARISONS))
def test_every_comparison_honours_adjust_and_alpha(name):
    compare = COMPARISONS[name]
    holm_tests, bh_tests = compare(), compare(adjust="bh")
    assert (holm_tests["adjust"] == "holm").all() and (bh_tests["adjust"] == "bh").all()
    pd.testing.assert_frame_equal(
        holm_tests.drop(columns=holm_tests.filter(regex="_adjusted$|^adjust$").columns),
        bh_tests.drop(columns=bh_tests.filter(regex="_adjusted$|^adjust$").columns),
    )
    assert not np.allclose(holm_tests["p_adjusted"], bh_tests["p_adjusted"])
    for raw in ("p", "p_wilcoxon"):
        for _, family in bh_tests.groupby("family"):
            adjusted = family[f"{raw}_adjusted"]
            np.testing.assert_allclose(adjusted, benjamini_hochberg(family[raw]))
    # a 90 % interval is narrower than a 95 % one; the tests themselves do not change
    narrow = compare(alpha=0.10)
    pd.testing.assert_series_equal(narrow["p"], holm_tests["p"])
    width, width_95 = (t["ci_high"] - t["ci_low"] for t in (narrow, holm_tests))
    assert (width.dropna() < width_95.dropna()).all() and width.notna().any()


def test_every_comparison_has_the_same_test_columns():
    tests = ["n", "mean_diff", "t", "p", "p_adjusted", "family", *METHOD_EXTRA]
    for name, compare in COMPARISONS.items():
        assert set(tests) <= set(compare().columns), name
    # Nadeau-Bengio where folds are paired, absent where images are
    assert "p_nb_adjusted" in COMPARISONS["compare_shifts"]().columns
    assert "t_nb" not in COMPARISONS["compare_methods_on"]().columns


# --- repeated k-fold cross-validation ---------------------------------------------------


def test_corrected_repeated_kfold_ttest_by_hand():
    # Two repeats of two folds: fold ids 0..3, fold f in repeat f // 2. Each repeat holds out
    # 10 and 30 of 40 images. Model a minus model b per fold: 0.10, 0.30, 0.20, 0.40.
    rows = []
    for fold, (acc_a, acc_b, n) in enumerate(
        [(0.80, 0.70, 10), (0.90, 0.60, 30), (0.75, 0.55, 10), (0.85, 0.45, 30)]
    ):
        for model, acc in (("a", acc_a), ("b", acc_b)):
            rows.append({"dataset": "d", "model": model, "fold": fold, "accuracy": acc})
            rows[-1].update({"repeat": fold // 2, "n_images": n, "f1_macro": acc})
    row = compare_models(pd.DataFrame(rows)).iloc[0]
    # n_test/n_train per fold: 10/30 and 30/10 in each repeat, mean (1/3 + 3) / 2 = 5/3
    ratio = (1 / 3 + 3) / 2
    assert row["test_train_ratio"] == pytest.approx(ratio)
    # Bouckaert & Frank over the k r = 4 differences: mean 0.25, var (ddof 1) =
    # (0.15^2 + 0.05^2 + 0.05^2 + 0.15^2) / 3 = 0.05 / 3, df = 3
    t_rcv = 0.25 / math.sqrt((1 / 4 + ratio) * (0.05 / 3))
    assert row["t_rcv"] == pytest.approx(t_rcv)
    assert row["p_rcv"] == pytest.approx(2 * sps.t.sf(t_rcv, 3))
    assert row["repeats"] == 2 and row["n"] == 4
    # Nadeau-Bengio over the first repeat's two folds (0.10, 0.30): mean 0.2, var 0.02, df 1
    t_nb = 0.2 / math.sqrt((1 / 2 + ratio) * 0.02)
    assert row["t_nb"] == pytest.approx(t_nb)
    assert row["p_nb"] == pytest.approx(2 * sps.t.sf(t_nb, 1))
    # the plain t-test pairs all four folds, ignoring their overlap
    assert row["t"] == pytest.approx(0.25 / math.sqrt(0.05 / 3 / 4))
    half = sps.t.ppf(0.975, 3) * math.sqrt((1 / 4 + ratio) * (0.05 / 3))
    assert (row["ci_low_rcv"], row["ci_high_rcv"]) == pytest.approx((0.25 - half, 0.25 + half))


def test_without_repeats_the_corrected_repeated_test_is_nadeau_bengio():
    fm = _fold_metrics_table()
    fm["n_images"] = fm["fold"].map({0: 10, 1: 10, 2: 10, 3: 20})
    for table in (compare_models(fm), compare_models(fm.assign(repeat=0))):
        assert (table["repeats"] == 1).all()
        for suffix in ("t", "p", "p", "ci_low", "ci_high"):
            np.testing.assert_array_equal(table[f"{suffix}_rcv"], table[f"{suffix}_nb"])
        np.testing.assert_array_equal(table["p_rcv_adjusted"], table["p_nb_adjusted"])


def test_fold_metrics_name_each_fold_s_repeat():
    preds, _, _ = _predictions()
    assert (fold_metrics(preds)["repeat"] == 0).all()  # no repeats: all repeat 0
    preds["fold"] = preds["fold"].replace({1: 5})  # fold 5 of 2 per repeat: repeat 2
    fm = fold_metrics(preds, n_folds=2).set_index(["dataset", "fold"])
    assert fm["repeat"].to_dict() == {("bin", 0): 0, ("bin", 5): 2, ("tri", 0): 0}


def test_shift_comparisons_take_the_repeats_as_the_model_comparisons_do():
    # two repeats of the five folds above: fold ids 0..9, fold f in repeat f // 5
    once = _shift_metrics()
    twice = pd.concat([once, once.assign(fold=once["fold"] + 5)], ignore_index=True)
    twice["repeat"] = twice["fold"] // 5
    tests = compare_shifts(twice).iloc[0]
    # n_test/n_train within a repeat (10 of 50), not over both repeats' 100 images
    assert tests["test_train_ratio"] == pytest.approx(10 / 40)
    assert tests["repeats"] == 2 and tests["n"] == 10
    first = compare_shifts(once).iloc[0]
    assert (tests["t_nb"], tests["p_nb"]) == pytest.approx((first["t_nb"], first["p_nb"]))
    # the ten differences are the five twice: the same mean, and a variance (ddof 1) of
    # 2 SS / 9 = 8/9 of the five's SS / 4; the corrected repeated test over them by hand
    mean = first["mean_diff"]
    var5 = (mean / first["t_nb"]) ** 2 / (1 / 5 + 1 / 4)  # t_nb = mean / sqrt((1/5 + 1/4) var5)
    t_rcv = mean / math.sqrt((1 / 10 + 1 / 4) * var5 * 8 / 9)
    assert tests["t_rcv"] == pytest.approx(t_rcv)
    assert tests["p_rcv"] == pytest.approx(2 * sps.t.sf(abs(t_rcv), 9))
