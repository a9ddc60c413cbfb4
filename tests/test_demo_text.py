"""The demo's own text model (`demo-text`, issue 42 point 4): the demo records it as what made
its label embeddings, so that `predict --classes` on a demo run embeds class names as the
demo's were made: its own prompt names give back its accuracy, and new names embed and rank."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clipclap_cli.evaluate import metrics
from clipclap_cli.plugins.encoder_records import recorded_encoder
from clipclap_cli.plugins.registry import list_encoders
from clipclap_cli.store.feature_store import FeatureStore
from clipclap_cli.testing import check_encoder


@pytest.fixture(scope="module")
def demo(demo_store):
    store = FeatureStore(demo_store)
    return store, store.info("demo")


def _predict(cli, run, tmp_path, names: list[str]) -> list[dict]:
    out = tmp_path / "p.json"
    r = cli("predict", run, "--dataset", "demo", "--classes", ",".join(names), "--top-k", "1000", "-o", out)
    assert r.exit_code == 0, r
    return json.loads(out.read_text())


def test_the_demo_records_its_text_model_and_it_gives_back_every_row(pm, demo):
    store, info = demo
    for part in ("clip", "clap"):
        record = store.label_embedding_record("demo", part)
        assert record["encoder"] == "demo-text" and record["templates"] == ["{}"]
        assert record["params"]["part"] == part and record["params"]["seed"] == "0"
        encoder = recorded_encoder(record, pm)
        rows = np.stack([encoder.label_embedding([name]) for name in info["prompt_names"]])
        assert np.array_equal(rows, store.read_label_embeddings("demo", part))  # bit for bit
        assert np.array_equal(encoder.encode_batch(info["prompt_names"][:3]), rows[:3])


def test_the_encoder_keeps_the_contract_and_embeds_any_text(pm):
    check_encoder(list_encoders(pm).get("demo-text"))
    encoder = type(list_encoders(pm).get("demo-text"))()
    new = encoder.label_embedding(["electric guitar"])
    assert new.shape == (512,) and abs(float(np.linalg.norm(new)) - 1) < 1e-6
    assert np.array_equal(new, encoder.label_embedding(["Electric  Guitar"]))  # as a lowercasing tokenizer sees it
    assert not np.array_equal(new, encoder.label_embedding(["acoustic guitar"]))
    pooled = encoder.label_embedding(["electric guitar", "class 003"])  # several prompts: pooled, unit length
    assert abs(float(np.linalg.norm(pooled)) - 1) < 1e-6


def test_the_demo_s_own_prompt_names_reach_the_accuracy_evaluate_reports(cli, trained_run, demo, tmp_path):
    """The issue's check: --classes = the demo's prompt names in class order; the JSON scored by
    hand gives results.json's S, U, HM and ZSL exactly."""
    _, info = demo
    names = info["prompt_names"]
    rows = _predict(cli, trained_run, tmp_path, names)
    results = json.loads((trained_run / "results.json").read_text())
    class_of = dict(zip(names, info["classes"], strict=True))
    index = {c: i for i, c in enumerate(info["classes"])}
    counts, hits, zsl_hits = torch.zeros(len(names)), torch.zeros(len(names)), torch.zeros(len(names))
    seen = {index[class_of[p["class"]]] for row in rows for p in row["predictions"] if p["seen"]}
    for row in rows:
        counts[index[row["label"]]] += 1
        hits[index[row["label"]]] += class_of[row["predictions"][0]["class"]] == row["label"]
        zsl_hits[index[row["label"]]] += class_of[next(p["class"] for p in row["predictions"]
                                                       if not p["seen"])] == row["label"]
    recall, zsl = hits / counts.clamp(min=1), zsl_hits / counts.clamp(min=1)
    seen_ids = torch.tensor(sorted(seen))
    unseen_ids = torch.tensor([i for i in range(len(names)) if i not in seen and counts[i] > 0])
    s, u = recall[seen_ids].mean(), recall[unseen_ids].mean()
    hm = (2 * s.double() * u.double()) / (s.double() + u.double() + metrics.EPS)
    assert len(seen) == results["classes"]["seen"]
    by_hand = {"seen": float(s), "unseen": float(u), "hm": float(hm), "zsl": float(zsl[unseen_ids].mean())}
    assert by_hand == {k: results["test"][k] for k in by_hand}


def test_a_new_name_embeds_and_ranks_beside_the_demo_s_classes(cli, trained_run, demo, tmp_path):
    _, info = demo
    names = [*info["prompt_names"][:5], "electric guitar"]
    rows = _predict(cli, trained_run, tmp_path, names)
    assert len(rows) == 1406 and all({p["class"] for p in row["predictions"]} == set(names) for row in rows)
    new = [p for row in rows for p in row["predictions"] if p["class"] == "electric guitar"]
    assert not any(p["seen"] for p in new) and len({p["score"] for p in new}) > 1  # scored per video
    assert rows == _predict(cli, trained_run, tmp_path, names)  # the same embedding every time


def test_a_model_file_carries_what_made_its_label_embeddings(cli, trained_run, tmp_path, pm):
    """Exported, the run's label encoders travel in the header: the file embeds names as the run."""
    from clipclap_cli.predict.classes import embed_class_names
    from clipclap_cli.runs.trained import load_trained

    path = tmp_path / "demo.clipclap"
    assert cli("export", trained_run, "-o", path).exit_code == 0
    run, moved = load_trained(trained_run, pm), load_trained(path, pm)
    assert moved.label_encoders == run.label_encoders and set(run.label_encoders) == {"clip", "clap"}
    names = ["class 003", "electric guitar"]
    assert torch.equal(embed_class_names(moved, names, None, pm), embed_class_names(run, names, None, pm))


def test_label_embeddings_without_a_record_name_the_way_out(pm):
    """Label embeddings that record no text encoder (an older demo store, imported features) fall
    back to the part's encoder with its defaults; where that cannot run (CLIP without its
    weights, as on every machine of the suite), the one line says why and how to rewrite the demo."""
    from types import SimpleNamespace

    from clipclap_cli.predict.classes import ClassNamesError, text_encoder

    model = SimpleNamespace(label_encoders={}, features={})
    with pytest.raises(ClassNamesError) as caught:
        text_encoder(model, "clip", pm)
    message = str(caught.value)
    assert message.startswith("the model's clip label embeddings record no text encoder")
    assert "`clipclap demo --no-train` rewrites it" in message and "has no weights" in message
