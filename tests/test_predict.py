"""`clipclap predict` over stored features (issue 42): the ranking decides as evaluation does,
sample for sample, so that S, U, HM and ZSL computed by hand from its JSON equal results.json
exactly, for clipclap, a baseline head and a plugin head; its formats; bad input in one line."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clipclap_cli.evaluate import metrics
from clipclap_cli.plugins.fusion_head import FusionHead
from clipclap_cli.plugins.manager import make_plugin_manager
from clipclap_cli.predict.scoring import rank_distances
from helpers import SMOKE, one_error_line, register_plugin


class Projected(FusionHead):
    """A plugin's head: [audio | video] and the label embeddings mapped to one small space,
    nearest class by Euclidean distance, trained with cross-entropy over negative distances."""

    head_id = "projected"

    @dataclass(frozen=True)
    class Params:
        dim: int = 16

    def __init__(self, dims, params):
        super().__init__(dims, params)
        self.inputs = nn.Linear(dims.audio + dims.video, params.dim)
        self.labels = nn.Linear(sum(width for _, width in dims.text_parts), params.dim)

    def _embedded(self, audio, video, class_text):
        return self.inputs(torch.cat([audio, video], dim=1)), self.labels(class_text)

    def loss(self, batch, class_text):
        x, t = self._embedded(batch.audio, batch.video, class_text)
        loss = F.cross_entropy(-torch.cdist(x, t), batch.target)
        return loss, {"ce": loss.detach()}

    def distances(self, audio, video, class_text):
        x, t = self._embedded(audio, video, class_text)
        return {"both": torch.cdist(x, t)}


def _manager():
    pm = make_plugin_manager(entrypoints=False)
    register_plugin(pm, "projected-plugin", heads=[Projected])
    return pm


@pytest.fixture(scope="module")
def head_runs(tmp_path_factory, demo_store, trained_run):
    """One evaluated SMOKE run per kind of head: clipclap (the session's), a baseline (devise)
    and a plugin's (`Projected`)."""
    from clipclap_cli.cli import run

    root = tmp_path_factory.mktemp("head-runs")
    runs = {"clipclap": trained_run}
    for head in ("devise", "projected"):
        args = ["train", "demo", "--store", str(demo_store), "--head", head, "--run", str(root / head), *SMOKE]
        assert run(args, _manager()) == 0
        runs[head] = root / head
    return runs


def _predict_json(cli, run: Path, tmp_path: Path, *extra: str) -> list[dict]:
    out = tmp_path / "p.json"
    r = cli("predict", run, "--dataset", "demo", "--top-k", "1000", "-o", out, *extra, manager=_manager())
    assert r.exit_code == 0, r
    return json.loads(out.read_text())


def _figures_by_hand(rows: list[dict], classes: list[str], seen: set[str]) -> dict[str, float]:
    """S, U, HM at beta* (each row's first class) and ZSL (its best unseen class), per-class
    recall averaged over the test's seen and unseen classes, in evaluation's float32 arithmetic."""
    index = {c: i for i, c in enumerate(classes)}
    n = len(classes)
    counts, hits, zsl_hits = torch.zeros(n), torch.zeros(n), torch.zeros(n)
    for row in rows:
        label = index[row["label"]]
        counts[label] += 1
        hits[label] += row["predictions"][0]["class"] == row["label"]
        best_new = next(p["class"] for p in row["predictions"] if not p["seen"])
        zsl_hits[label] += best_new == row["label"]
    recall, zsl_recall = hits / counts.clamp(min=1), zsl_hits / counts.clamp(min=1)
    seen_ids = torch.tensor(sorted(index[c] for c in seen))
    unseen_ids = torch.tensor(sorted(index[c] for c in classes if c not in seen and counts[index[c]] > 0))
    s, u = recall[seen_ids].mean(), recall[unseen_ids].mean()
    hm = (2 * s.double() * u.double()) / (s.double() + u.double() + metrics.EPS)
    return {"seen": float(s), "unseen": float(u), "hm": float(hm), "zsl": float(zsl_recall[unseen_ids].mean())}


@pytest.mark.parametrize("head", ["clipclap", "devise", "projected"])
def test_predictions_score_exactly_as_evaluate(cli, head_runs, tmp_path, head):
    """The issue's point 4: the JSON of `predict --dataset demo` (the test partitions, every
    class) scored by hand gives results.json's S, U, HM and ZSL exactly."""
    run = head_runs[head]
    rows = _predict_json(cli, run, tmp_path)
    results = json.loads((run / "results.json").read_text())
    seen = {p["class"] for row in rows for p in row["predictions"] if p["seen"]}
    assert len(seen) == results["classes"]["seen"] and len(rows[0]["predictions"]) == 48
    classes = [p["class"] for p in sorted(rows[0]["predictions"], key=lambda p: p["class"])]
    by_hand = _figures_by_hand(rows, classes, seen)
    assert by_hand == {k: results["test"][k] for k in by_hand}


def test_top_one_is_evaluations_decision_sample_for_sample(monkeypatch):
    """Distances with many ties and a beta that float32 rounding makes tie again: the first
    class of every row is the prediction evaluation scores (captured from metrics)."""
    g = torch.Generator().manual_seed(0)
    dist = torch.randint(0, 6, (4000, 12), generator=g).to(torch.float32) * 0.25 + 1e8 * (torch.rand(1, 12) > 2)
    # one float32 step apart near 1, equal once beta = 1 is added (2 has steps twice as wide),
    # the unseen classes behind: evaluation keeps the nearest before the bias, a plain sort would not
    dist[:2000] = torch.randint(0, 3, (2000, 12), generator=g).to(torch.float32) * 1e-7 + 1.0
    dist[:2000, 8:] += 1.5
    targets = torch.randint(0, 12, (4000,), generator=g)
    seen_ids, unseen_ids = torch.arange(0, 8), torch.arange(8, 12)
    captured = []
    real = metrics._recalls
    monkeypatch.setattr(metrics, "_recalls", lambda pred, t, n: captured.append(pred.clone()) or real(pred, t, n))
    seen_mask = torch.arange(12) < 8
    for beta in (0.0, 0.25, 1e-7, 0.5 + 1e-9, 3.3333333333333335e-11, 1.0):
        captured.clear()
        metrics.evaluate_distances(dist, targets, seen_ids, unseen_ids, fixed_beta=beta, num_classes=12)
        decided = captured[-1][0]  # the last call: the per-class accuracy at the bias
        scores, order = rank_distances(dist, seen_mask, beta, top_k=12)
        assert torch.equal(order[:, 0], decided), beta
        assert torch.equal(rank_distances(dist, seen_mask, beta, top_k=3)[1], order[:, :3])
        assert torch.equal(torch.sort(order, dim=1).values, torch.arange(12).expand(4000, 12))
        assert bool((scores[:, 1:] <= scores[:, :-1]).all())  # best first


def test_a_row_ranks_by_calibrated_distance_ties_to_the_lower_index():
    dist = torch.tensor([[1.0, 2.0, 1.5, 1.5]])
    scores, order = rank_distances(dist, torch.tensor([True, False, False, False]), beta=0.5, top_k=3)
    assert order.tolist() == [[0, 2, 3]] and scores.tolist() == [[-1.5, -1.5, -1.5]]
    scores, order = rank_distances(dist, torch.tensor([False, False, True, True]), beta=1.0, top_k=9)
    assert order.tolist() == [[0, 1, 2, 3]] and scores.tolist() == [[-1.0, -2.0, -2.5, -2.5]]


def test_formats_partitions_and_the_output_file(cli, trained_run, tmp_path):
    """table (stdout), CSV by -o's extension, JSON by --format; a partition chosen; every row
    its top K, the first equal across formats."""
    r = cli("predict", trained_run, "--dataset", "demo", "--partition", "stage_2_test_unseen", "-k", "2")
    assert r.exit_code == 0, r
    assert "trained on" in r.stdout and "811 videos scored against 48 classes" in r.stderr
    csv_file = tmp_path / "p.csv"
    assert cli("predict", trained_run, "--dataset", "demo", "-k", "2", "-o", csv_file).exit_code == 0
    lines = csv_file.read_text().splitlines()
    assert lines[0] == "id,label,rank,class,score,seen,error" and len(lines) == 1 + 2 * 1406
    r = cli("predict", trained_run, "--dataset", "demo", "-k", "2", "--format", "json")
    rows = json.loads(r.stdout)
    assert len(rows) == 1406 and all(len(row["predictions"]) == 2 for row in rows)
    first = lines[1].split(",")
    assert [first[0], first[1], first[3]] == [rows[0]["id"], rows[0]["label"], rows[0]["predictions"][0]["class"]]
    assert set(rows[0]["predictions"][0]) == {"class", "score", "seen"}


@pytest.mark.parametrize(("args", "says"), [
    (("-o", "p.yaml"), "cannot tell the format"),
    (("--format", "xml"), "--format 'xml'"),
    (("--partition", "stage_9"), "--partition 'stage_9'"),
    (("--partition", "stage_9", "-o", "keep.json"), "--partition 'stage_9'"),  # the file there stays whole
    (("--head", "clipclap"), "only `zeroshot`"),
])
def test_bad_input_is_one_line_and_writes_nothing(cli, trained_run, tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.json").write_text("old")
    r = cli("predict", trained_run, "--dataset", "demo", *args)
    assert says in one_error_line(r), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json"]
    assert (tmp_path / "keep.json").read_text() == "old"


def test_an_unfinished_or_unevaluated_run_is_refused(cli, trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "results.json").unlink()
    r = cli("predict", run, "--dataset", "demo", "-o", tmp_path / "p.json")
    assert f"clipclap evaluate {run}" in one_error_line(r)
    shutil.rmtree(run / "stage2")
    assert "no completed stage 2" in one_error_line(cli("predict", run, "--dataset", "demo"))
    assert not (tmp_path / "p.json").exists()
    r = cli("predict", "--dataset", "demo")
    assert "name a MODEL" in one_error_line(r)


def test_published_checkpoints_predict_as_the_run_they_are(cli, trained_run, demo_store, tmp_path):
    """MODEL may be a pair of checkpoints as `evaluate` takes them: a run's own two model files
    give the run's rows (the same beta* found on validation)."""
    from_run, from_pair = tmp_path / "run.json", tmp_path / "pair.json"
    assert cli("predict", trained_run, "--dataset", "demo", "-k", "4", "-o", from_run).exit_code == 0
    r = cli("predict", "--stage1", trained_run / "stage1" / "best.safetensors", "--stage2",
            trained_run / "stage2" / "final.safetensors", "--dataset", "demo", "--store", demo_store, "-k", "4",
            "-o", from_pair)
    assert r.exit_code == 0, r
    assert from_pair.read_text() == from_run.read_text()
    r = cli("predict", "--stage1", trained_run / "stage1" / "best.safetensors", "--dataset", "demo")
    assert "--stage1 and --stage2 with --dataset" in one_error_line(r)
