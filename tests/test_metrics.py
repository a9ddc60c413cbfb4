"""Calibrated stacking against the reference goldens and against scikit-learn."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics

import numpy as np
import pytest
import torch
from sklearn.metrics import recall_score

from clipclap_cli.evaluate.metrics import beta_star, bias_grid, evaluate_distances
from shared_material import GOLDENS


@pytest.fixture(scope="module")
def eval_a():
    z = np.load(GOLDENS / "eval_a.npz")
    return {k: z[k] for k in z.files}, json.loads((GOLDENS / "eval_a.json").read_text())


def _run(data, **kw):
    emb, cls = torch.from_numpy(data["embeddings"]), torch.from_numpy(data["class_embeddings"])
    return evaluate_distances(torch.cdist(emb, cls), torch.from_numpy(data["targets"]),
                              torch.from_numpy(data["seen_class_ids"]), torch.from_numpy(data["unseen_class_ids"]),
                              num_classes=int(data["num_classes"]), **kw)


def _compare(got, want):
    for key in ("seen", "unseen", "hm", "zsl", "beta"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    np.testing.assert_allclose(got["per_class_recall"], want["per_class_recall"], atol=1e-6)


def test_grid_search_matches_reference(eval_a):
    data, meta = eval_a
    _compare(_run(data).best.as_dict(), meta["results"]["grid"])


def test_fixed_beta_matches_reference(eval_a):
    data, meta = eval_a
    _compare(_run(data, fixed_beta=meta["fixed_beta"]).best.as_dict(), meta["results"]["fixed"])


def test_grid_is_reference_linspace():
    g = bias_grid()
    assert len(g) == 76 and g[0] == 0 and g[-1] == 5
    assert float(g[16]) == pytest.approx(16 / 15, abs=1e-7)


def _sklearn_gzsl(dist, targets, seen, unseen, beta):
    cols = np.sort(np.concatenate([seen, unseen]))
    shifted = dist + beta * np.isin(cols, seen)[None, :]
    pred = cols[np.argmin(shifted, axis=1)]
    labels_s = np.sort(seen)
    labels_u = np.sort(unseen)
    rec = recall_score(targets, pred, labels=np.concatenate([labels_s, labels_u]), average=None, zero_division=0)
    s, u = rec[: len(labels_s)].mean(), rec[len(labels_s):].mean()
    hm = 2 * s * u / (s + u + np.finfo(float).eps)
    ucols = np.isin(cols, unseen)
    zpred = cols[ucols][np.argmin(dist[:, ucols], axis=1)]
    mask = np.isin(targets, unseen)
    zrec = recall_score(targets[mask], zpred[mask], labels=labels_u, average=None, zero_division=0)
    return s, u, hm, zrec.mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("betas_at_once", [None, 7])
def test_agrees_with_sklearn_on_random_data(seed, betas_at_once, monkeypatch):
    if betas_at_once is not None:  # the grid in chunks of 7 biases (the last one shorter)
        monkeypatch.setattr("clipclap_cli.evaluate.metrics.GRID_CHUNK_ELEMENTS", 400 * betas_at_once)
    rng = np.random.default_rng(seed)
    n_cls = 20
    ids = rng.permutation(30)[:n_cls]
    seen, unseen = np.sort(ids[:14]), np.sort(ids[14:])
    targets = rng.choice(ids, size=400)
    dist = rng.random((400, n_cls)).astype(np.float32) * 3
    res = evaluate_distances(torch.from_numpy(dist), torch.from_numpy(targets),
                             torch.from_numpy(seen), torch.from_numpy(unseen), num_classes=30)
    for i, beta in enumerate(res.betas):
        s, u, hm, zsl = _sklearn_gzsl(dist, targets, seen, unseen, np.float32(beta))
        assert res.seen[i] == pytest.approx(s, abs=1e-6)
        assert res.unseen[i] == pytest.approx(u, abs=1e-6)
        assert res.hm[i] == pytest.approx(hm, abs=1e-6)
    assert res.best.zsl == pytest.approx(zsl, abs=1e-6)
    best = int(np.argmax(res.hm))
    assert res.best.beta == res.betas[best] and res.best.hm == max(res.hm)


@pytest.mark.parametrize("betas_at_once", [1, 5, 75])
def test_grid_in_chunks_gives_the_same_numbers(eval_a, betas_at_once, monkeypatch):
    """A fine grid on a large split is evaluated a chunk of biases at a time: every number, the
    curve and the best point's per-class figures, is the one a single pass gives."""
    data, _ = eval_a
    whole = _run(data).as_dict()
    monkeypatch.setattr("clipclap_cli.evaluate.metrics.GRID_CHUNK_ELEMENTS", len(data["targets"]) * betas_at_once)
    assert _run(data).as_dict() == whole


def test_beta_star_is_reference_average():
    assert beta_star({"both": 0.4}) == pytest.approx(0.4 + 1e-10 / 3, rel=1e-15)
    assert beta_star({"audio": 0.2, "video": 0.4, "both": 0.6}) == pytest.approx(0.4 + 1e-10 / 3, rel=1e-15)


# --- report's statistics: against scipy and by hand --------------------------------------------
def _cell(method, seeds, hm, dataset="demo"):
    from clipclap_cli.report.grouping import Cell
    from clipclap_cli.report.seed_statistics import confidence_interval

    values = {m: {str(s): v for s, v in zip(seeds, hm, strict=True)} for m in ("seen", "unseen", "hm", "zsl")}
    mean = {m: statistics.fmean(hm) for m in values}
    std = {m: statistics.stdev(hm) if len(hm) > 1 else 0.0 for m in values}
    ci = {m: confidence_interval(hm) for m in values} if len(hm) > 1 else {}
    return Cell(method, dataset, len(seeds), mean, std, list(seeds), head=method.split()[0], values=values, ci95=ci)


def test_the_confidence_interval_is_students_t_by_hand():
    """n = 3 values 50, 52, 57: mean 53, s = sqrt(13), t(0.975, 2) = 4.302653 (tables)."""
    from clipclap_cli.report.seed_statistics import confidence_interval

    low, high = confidence_interval([50.0, 52.0, 57.0])
    half = 4.302652729911275 * math.sqrt(13) / math.sqrt(3)
    assert low == pytest.approx(53 - half, abs=1e-9) and high == pytest.approx(53 + half, abs=1e-9)


def test_rows_are_compared_with_the_reference_by_a_paired_t_test_over_shared_seeds():
    from scipy import stats

    from clipclap_cli.report.seed_statistics import compare
    from clipclap_cli.report.tables import render

    ref = _cell("clipclap", [1, 2, 3, 4], [60.0, 61.0, 59.5, 60.5])
    close = _cell("tcaf", [2, 3, 4, 5], [60.2, 59.0, 61.0, 40.0])  # seed 5 has no pair: left out of the test
    far = _cell("avca", [1, 2, 3, 4], [50.0, 50.5, 49.0, 51.0])
    compare([ref, close, far], "clipclap")
    assert ref.against == {}
    assert close.against["shared_seeds"] == [2, 3, 4]
    expected = stats.ttest_rel([60.2, 59.0, 61.0], [61.0, 59.5, 60.5]).pvalue
    assert close.against["p"]["hm"] == pytest.approx(expected, rel=1e-12) and close.against["differs"]["hm"] is False
    assert far.against["p"]["hm"] == pytest.approx(stats.ttest_rel([50.0, 50.5, 49.0, 51.0],
                                                                    [60.0, 61.0, 59.5, 60.5]).pvalue, rel=1e-12)
    assert far.against["differs"]["hm"] is True
    md = render([ref, close, far], "markdown")
    assert "† no significant difference from clipclap" in md
    table = md.split("\n\n")[0]  # the results; the paired tests follow
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert rows["tcaf"].count("†") == 4 and "†" not in rows["avca"] and "†" not in rows["clipclap"]
    csv_rows = list(csv.DictReader(io.StringIO(render([ref, close, far], "csv"))))
    tcaf = next(r for r in csv_rows if r["method"] == "tcaf")
    assert tcaf["against"] == "clipclap" and tcaf["shared_seeds"] == "2 3 4" and tcaf["hm_differs"] == "false"
    assert float(tcaf["hm_p"]) == pytest.approx(expected, rel=1e-3)
    assert float(tcaf["hm_ci95_low"]) < float(tcaf["hm_mean"]) < float(tcaf["hm_ci95_high"])
    assert json.loads(render([ref, close, far], "json"))[1]["against"]["p"]["hm"] == pytest.approx(expected)


def test_identical_seeds_do_not_differ_and_latex_and_html_escape_names():
    from clipclap_cli.report.seed_statistics import compare
    from clipclap_cli.report.tables import render

    ref = _cell("clipclap", [1, 2], [60.0, 61.0])
    twin = _cell("my_head & co (50% #1)", [1, 2], [60.0, 61.0])
    compare([ref, twin], "clipclap")
    assert twin.against["p"]["hm"] == 1.0 and twin.against["differs"]["hm"] is False
    latex = render([ref, twin], "latex")
    assert r"my\_head \& co (50\% \#1)" in latex and r"$^{\dagger" in latex  # then \ddagger: 2 seeds
    html_table = render([ref, twin], "html")
    assert "my_head &amp; co (50% #1)" in html_table and "<script" not in render(
        [_cell("<script>", [1], [1.0])], "html")
