"""The `hspmoe` head (HSP-MoE) against goldens from its authors' code (tests/goldens_hspmoe,
README.md there), by hand where the goldens cannot reach, and through training and reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.special import log_softmax, softmax

from clipclap_cli.api import FeatureDims
from clipclap_cli.evaluate.metrics import evaluate_distances
from clipclap_cli.plugins.fusion_head import Batch
from clipclap_cli.plugins.registry import create_head
from clipclap_cli.runs.checkpoints import load_into

GOLDEN_DIR = Path(__file__).parent / "goldens_hspmoe"
sys.path.insert(0, str(GOLDEN_DIR))
from inputs import SEEN, golden_inputs, golden_state  # noqa: E402

DIMS = FeatureDims(audio=1024, video=512, text_parts=(("clip", 512), ("clap", 1024)))
ALL_OFF = {"hypersphere": False, "dp_weight": 0.0, "rp_weight": 0.0, "hup_weight": 0.0, "far": False, "moe": False}


@pytest.fixture(scope="module")
def golden():
    z = np.load(GOLDEN_DIR / "hspmoe_a.npz")
    meta = json.loads((GOLDEN_DIR / "hspmoe_a.json").read_text())
    inputs = {k: torch.from_numpy(v) for k, v in golden_inputs().items()}
    state = {k: torch.from_numpy(v) for k, v in golden_state(meta["state_dict_keys"]).items()}
    return {k: torch.from_numpy(z[k]) for k in z.files}, meta, inputs, state


def _head(state, **params):
    head = create_head("hspmoe", DIMS, params)
    load_into(head, state, "goldens")
    return head


def _close(got, want, rtol=1e-5, atol=1e-6):
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


def test_state_dict_names_are_theirs(golden):
    _, meta, _, _ = golden
    assert sorted(create_head("hspmoe", DIMS, {}).state_dict()) == sorted(meta["state_dict_keys"])
    # the AV-MoE exists only where it is on, as in their model
    without = create_head("hspmoe", DIMS, {"moe": False}).state_dict()
    assert not any(k.startswith("semantic_consensus.") for k in without)


def test_forward_and_every_loss_term_match_their_code(golden):
    arrays, meta, x, state = golden
    head = _head(state).eval()
    labels, train_text = x["labels"].long(), x["class_text"][:SEEN]
    batch = Batch(x["audio"], x["video"], x["class_text"][labels], labels)
    with torch.no_grad():
        theta_o = head.O_proj(head.O_enc(torch.cat((x["video"], x["audio"]), dim=1)))
        _close(theta_o, arrays["theta_o"])
        refined, mixed, routing = head.semantic_consensus(theta_o, x["video"], x["audio"], 0.5, 1.0)
        _close(mixed, arrays["moe_direction"])
        _close(routing, arrays["routing_weights"])
        _close(head.embed_samples(x["audio"], x["video"]), arrays["theta_o_semantic"])
        _close(head.class_embeddings(train_text), arrays["class_semantic"])
        total, parts = head.loss(batch, train_text)
        student, raw = refined, torch.cat((x["video"], x["audio"]), dim=1)
        terms = {"distribution": head.distribution_loss(student, arrays["class_semantic"], raw, train_text),
                 "relation": head.relation_loss(student, raw), "hup_uniformity": head.hup_loss(student, raw, labels)}
        terms["hup_preserve"] = _head(state, hup_mode="preserve").eval().hup_loss(student, raw, labels)
    want = meta["losses_eval_mode"]
    assert float(total) == pytest.approx(want["Loss/total_loss"], rel=1e-5)
    for name, value in parts.items():
        assert float(value) == pytest.approx(want[f"Loss/{name}"], rel=1e-5, abs=1e-9), name
    # The distribution term is a KL divergence of two close distributions: a difference of two
    # entropies of about log(classes) nats, times t**2 = 4, so float32 rounding leaves about
    # 3 * 2**-23 * 4 = 1.4e-6 of it to the summation order (on an AVX-512 CPU theirs and ours differ
    # by 2.3e-7, 1.5e-5 of the term; both lie within 1.6e-7 of the same term in float64).
    for name, value in terms.items():
        assert float(value) == pytest.approx(meta["terms_eval_mode"][name], rel=1e-5, abs=1.4e-6), name


@pytest.fixture(scope="module")
def stepped(golden):
    """Their three optimiser steps (dropout off, Adam with their weight decay): each step's loss
    terms, then the weights and batch-norm statistics after them."""
    _, meta, x, state = golden
    head = _head(state, dropout=0.0, moe_dropout=0.0).train()
    optimiser = torch.optim.Adam(head.parameters(), lr=meta["lr"], weight_decay=meta["weight_decay"])
    train_text, losses = x["class_text"][:SEEN], []
    for step in (1, 2, 3):
        labels = x[f"step{step}_labels"].long()
        batch = Batch(x[f"step{step}_audio"], x[f"step{step}_video"], x["class_text"][labels], labels)
        total, parts = head.loss(batch, train_text)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        head.replay_forward(batch)
        losses.append({"total_loss": total.item(), **{k: v.item() for k, v in parts.items()}})
    return head, losses


def _feeds_batch_norm(name, state):
    """A linear layer's bias whose next module is a batch norm (`fc.<i>.bias`, `fc.<i+1>.running_mean`)."""
    prefix, _, rest = name.rpartition(".fc.")
    index, _, leaf = rest.partition(".")
    return bool(prefix) and leaf == "bias" and f"{prefix}.fc.{int(index) + 1}.running_mean" in state


def test_three_optimiser_steps_match_their_code(golden, stepped):
    arrays, meta, _, _ = golden
    head, losses = stepped
    for ours, theirs in zip(losses, meta["step_losses"], strict=True):
        for name, value in ours.items():
            assert value == pytest.approx(theirs[f"Loss/{name}"], rel=1e-4, abs=1e-9), name
    before = golden[3]
    for name, tensor in head.state_dict().items():
        want = arrays[f"after.{name}"]
        if _feeds_batch_norm(name, before):
            # batch norm removes this bias: its gradient is zero but for rounding, which Adam turns
            # into steps of about lr either way, in their code as in ours; both stay within 3 lr
            for value in (tensor, want):
                assert (value - before[name]).abs().max() <= 3 * meta["lr"] * (1 + 1e-3), name
            continue
        if name.endswith("running_mean") and _feeds_batch_norm(_bias_before(name), before):
            # a batch mean of that layer's outputs includes its bias: off by at most the biases' gap
            torch.testing.assert_close(tensor, want, rtol=0, atol=6 * meta["lr"], msg=name)
            continue
        got = tensor.reshape(-1)[: want.numel()].reshape(want.shape) if tensor.numel() > want.numel() else tensor
        torch.testing.assert_close(got.to(want.dtype), want, rtol=1e-4, atol=1e-6, msg=name)
        _, absolute = meta["after_sums"][name]
        assert float(tensor.double().abs().sum()) == pytest.approx(absolute, rel=1e-4, abs=1e-6), name


def _bias_before(name):
    """`X.fc.<i>.running_mean` -> `X.fc.<i-1>.bias`, the linear layer before that batch norm."""
    prefix, index, _ = name.rsplit(".", 2)
    return f"{prefix}.{int(index) - 1}.bias"


def test_far_distances_and_bias_choice_match_their_evaluation(golden):
    """Their evaluation: the adapted distances, FAR with one raw scale over the evaluated set
    (`far_scale=set`), and calibrated stacking over their bias grid and at a fixed bias."""
    arrays, meta, x, state = golden
    theirs = _head(state, far_scale="set").eval()
    with torch.no_grad():
        adapted = torch.cdist(theirs.embed_samples(x["eval_audio"], x["eval_video"]),
                              theirs.class_embeddings(x["class_text"]))
        fused = theirs.distances(x["eval_audio"], x["eval_video"], x["class_text"])["both"]
    _close(adapted, arrays["eval_adapted"])
    _close(fused, arrays["eval_fused"])
    seen, unseen = torch.tensor(meta["seen_class_ids"]), torch.tensor(meta["unseen_class_ids"])
    targets = x["eval_labels"].long()
    for result, want in ((evaluate_distances(fused, targets, seen, unseen).best, meta["evaluation"]["grid"]),
                         (evaluate_distances(fused, targets, seen, unseen, fixed_beta=1 / 15).best,
                          meta["evaluation"]["fixed_beta_1_15"])):
        got = result.as_dict()
        for name in ("seen", "unseen", "hm", "zsl", "beta"):
            assert got[name] == pytest.approx(want[name], abs=1e-6), name


def test_far_per_sample_scale_by_hand(golden):
    """The default FAR (`far_scale=sample`): each sample's raw distances to unit [w_clip|w_clap],
    scaled to its own mean adapted distance, mixed half and half; independent of the batch."""
    _, _, x, state = golden
    head = _head(state).eval()
    a, v, ct = x["eval_audio"][:10], x["eval_video"][:10], x["class_text"]
    with torch.no_grad():
        got = head.distances(a, v, ct)["both"].double().numpy()
        part = head.distances(a[:3], v[:3], ct)["both"].double().numpy()
        adapted = torch.cdist(head.embed_samples(a, v), head.class_embeddings(ct)).double().numpy()
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    raw = cdist(unit(np.concatenate((v, a), 1).astype(np.float64)), unit(ct.numpy().astype(np.float64)))
    want = 0.5 * adapted + 0.5 * raw * adapted.mean(1, keepdims=True) / raw.mean(1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(part, got[:3], rtol=1e-5, atol=1e-6)


def test_distribution_and_relation_losses_by_hand():
    """DP: batchmean KL(teacher || student) * T^2 from scipy's softmaxes; RP: off-diagonal MSE."""
    g = torch.Generator().manual_seed(3)
    student, classes = torch.randn(6, 4, generator=g), torch.randn(3, 4, generator=g)
    raw, raw_classes = torch.randn(6, 9, generator=g), torch.randn(3, 9, generator=g)
    head = create_head("hspmoe", FeatureDims(audio=5, video=4, text_parts=(("clip", 4), ("clap", 5))),
                       {"distill_temperature": 2.0})
    unit = lambda m: m.numpy() / np.linalg.norm(m.numpy(), axis=1, keepdims=True)  # noqa: E731
    teacher = softmax(unit(raw) @ unit(raw_classes).T / 2.0, axis=1)
    log_student = log_softmax(unit(student) @ unit(classes).T / 2.0, axis=1)
    want = (teacher * (np.log(teacher) - log_student)).sum() / 6 * 4.0
    assert float(head.distribution_loss(student, classes, raw, raw_classes)) == pytest.approx(want, rel=1e-5)
    s, r = unit(student) @ unit(student).T, unit(raw) @ unit(raw).T
    off = ~np.eye(6, dtype=bool)
    assert float(head.relation_loss(student, raw)) == pytest.approx(((s - r)[off] ** 2).mean(), rel=1e-5)


def test_hup_uniformity_by_hand():
    """HUP: log of the mean of exp(-t |x_i - x_j|^2) over pairs of different classes, plus 4t."""
    g = torch.Generator().manual_seed(4)
    x, target = torch.randn(5, 3, generator=g), torch.tensor([0, 0, 1, 2, 2])
    head = create_head("hspmoe", FeatureDims(audio=5, video=4, text_parts=(("clip", 4), ("clap", 5))), {})
    u = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    pairs = [(i, j) for i in range(5) for j in range(5) if target[i] != target[j]]
    terms = [np.exp(-2.0 * ((u[i] - u[j]) ** 2).sum()) for i, j in pairs]
    assert float(head.hup_loss(x, x, target)) == pytest.approx(np.log(np.mean(terms)) + 8.0, rel=1e-5)


def test_with_everything_off_it_is_the_clipclap_head(golden):
    """The ablation table's first row: hypersphere, DP, RP, HUP, FAR and AV-MoE off give the
    clipclap head's loss, gradients and distances from the same weights."""
    _, _, x, state = golden
    ours = _head({k: v for k, v in state.items() if not k.startswith("semantic_consensus.")}, **ALL_OFF).train()
    clipclap = create_head("clipclap", DIMS, {})
    load_into(clipclap, ours.state_dict(), "goldens")
    clipclap.train()
    labels = x["labels"].long()
    batch = Batch(x["audio"], x["video"], x["class_text"][labels], labels)
    torch.manual_seed(5)
    total, _ = ours.loss(batch, x["class_text"][:SEEN])
    torch.manual_seed(5)
    want, _ = clipclap.loss(batch, x["class_text"][:SEEN])
    assert total.item() == pytest.approx(want.item(), rel=1e-6)
    total.backward()
    want.backward()
    for p, q in zip(ours.parameters(), clipclap.parameters(), strict=True):
        _close(p.grad, q.grad, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        _close(ours.eval().distances(x["eval_audio"], x["eval_video"], x["class_text"])["both"],
               clipclap.eval().distances(x["eval_audio"], x["eval_video"], x["class_text"])["both"], rtol=0, atol=0)


@pytest.mark.parametrize("params", [
    {"far_scale": "set"},  # theirs: one scale over the evaluated set; refused by the kit (see docs/heads.md)
])
def test_set_wide_far_scale_depends_on_the_batch(golden, params):
    _, _, x, state = golden
    head = _head(state, **params).eval()
    with torch.no_grad():
        whole = head.distances(x["eval_audio"], x["eval_video"], x["class_text"])["both"]
        part = head.distances(x["eval_audio"][:3], x["eval_video"][:3], x["class_text"])["both"]
    assert not torch.allclose(part, whole[:3], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", ["temperature=0", "far_weight=1.5", "dp_weight=-1", "moe_dropout=1",
                                 "far_scale=mean", "hup_mode=spread"])
def test_bad_parameters_are_one_clear_error(bad):
    from clipclap_cli.errors import ParamError
    from clipclap_cli.params import parse_params
    from clipclap_plugins.heads_hspmoe import HspMoeHead

    with pytest.raises(ParamError) as e:
        parse_params([bad], HspMoeHead.Params)
    assert bad.split("=")[0] in str(e.value) and "\n" not in str(e.value)


ABLATION = {  # their README section 8, row by row, as -p values
    "clipclap baseline": ALL_OFF,
    "+ hypersphere": {**ALL_OFF, "hypersphere": True},
    "+ DP": {**ALL_OFF, "hypersphere": True, "dp_weight": 0.001},
    "+ DP + RP": {**ALL_OFF, "hypersphere": True, "dp_weight": 0.001, "rp_weight": 0.0002},
    "+ DP + RP + HUP": {"far": False, "moe": False},
    "+ FAR": {"moe": False},
    "full model": {},
}


@pytest.mark.parametrize("row", list(ABLATION))
def test_contract_kit_passes_for_every_ablation_row(pm, row):
    from clipclap_cli.plugins.registry import list_heads
    from clipclap_cli.testing import check_head

    check_head(list_heads(pm).get("hspmoe"), ABLATION[row])


def test_contract_kit_refuses_their_set_wide_far_scale(pm):
    from clipclap_cli.plugins.contracts import ContractError
    from clipclap_cli.plugins.registry import list_heads
    from clipclap_cli.testing import check_head

    with pytest.raises(ContractError, match="depend on the other samples"):
        check_head(list_heads(pm).get("hspmoe"), {"far_scale": "set"})


@pytest.fixture(scope="module")
def hspmoe_runs(tmp_path_factory, demo_store):
    """The full model and one ablation row (+ DP + RP + HUP: FAR and AV-MoE off), the cheapest
    whole run each (both stages and the test evaluation) on the demo."""
    from clipclap_cli.cli import run
    from clipclap_cli.plugins.manager import make_plugin_manager
    from conftest import made_once
    from helpers import SMOKE

    def make(runs: Path) -> None:
        for extra in ((), ("-p", "far=false", "-p", "moe=false")):
            assert run(["train", "demo", "--store", str(demo_store), "--runs-dir", str(runs), "--head", "hspmoe",
                        *SMOKE, *extra], make_plugin_manager(entrypoints=False)) == 0

    return made_once(tmp_path_factory, "hspmoe-runs", make)  # trained once per session, read only


@pytest.mark.xdist_group("hspmoe-runs")  # the first trains `hspmoe_runs`, the others read it
def test_an_ablation_preset_trains_on_the_demo_and_says_so(hspmoe_runs):
    folders = sorted(p.parent.parent.name for p in hspmoe_runs.rglob("results.json"))
    assert len(folders) == 2 and all(f.startswith("hspmoe") for f in folders)
    [ablated] = [f for f in folders if "far=False" in f]  # the run's folder names what departs from the defaults
    assert "moe=False" in ablated
    for results in hspmoe_runs.rglob("results.json"):
        test = json.loads(results.read_text())["test"]
        assert all(0 <= test[m] <= 1 for m in ("seen", "unseen", "hm", "zsl"))


@pytest.mark.xdist_group("hspmoe-runs")
@pytest.mark.parametrize("fmt", ["markdown", "csv", "latex", "html", "json"])
def test_the_heads_rows_are_in_every_report_format(cli, hspmoe_runs, fmt):
    r = cli("report", hspmoe_runs, "--format", fmt)
    assert r.exit_code == 0 and "Traceback" not in r.stderr, r
    text = r.stdout.replace("\\allowbreak{}", "")  # LaTeX's break points in the settings
    assert text.count("hspmoe") >= 2 and "far=False" in text, r.stdout


def test_their_published_rows_are_one_seed_each(pm):
    """datasets.toml: their README 7.2 for each benchmark (S, U, HM, ZSL), and that it is seed 42
    alone (`seeds = [42]`)."""
    from clipclap_cli.data.datasets_toml import load_catalog

    catalog = load_catalog(pm)
    readme = {"ucf": (81.54, 56.90, 67.03, 59.16), "activitynet": (52.74, 27.99, 36.57, 31.28),
              "vggsound": (31.49, 13.78, 19.17, 14.97)}
    for dataset, (s, u, hm, zsl) in readme.items():
        assert catalog.get(dataset).published["hspmoe"] == {"seen": s, "unseen": u, "hm": hm, "zsl": zsl}
        assert 2 * s * u / (s + u) == pytest.approx(hm, abs=0.01)  # their HM is the harmonic mean of their S, U
        assert catalog.get(dataset).published_seeds["hspmoe"] == [42]
        assert "clipclap" not in catalog.get(dataset).published_seeds  # the paper's are means: it does not say


def test_a_published_row_of_one_seed_is_marked_in_the_report(pm, tmp_path):
    """`report --published`: the row of a single run says so under the table (its seed in the
    CSV's seeds column); a malformed `seeds` is refused naming the key."""
    import csv
    import io

    from clipclap_cli.data.datasets_toml import load_catalog
    from clipclap_cli.errors import ConfigError
    from clipclap_cli.report.grouping import Cell, with_published
    from clipclap_cli.report.tables import render

    entry = load_catalog(pm).get("ucf")
    paper = {"ucf": {h: v | ({"seeds": entry.published_seeds[h]} if h in entry.published_seeds else {})
                     for h, v in entry.published.items()}}
    cells = with_published([Cell("hspmoe", "ucf", 1, {"hm": 60.0}, {}, [42], head="hspmoe")], paper)
    text = render(cells, "markdown")
    assert "hspmoe (paper) (seed 42): one run, not a mean over seeds" in text
    assert "clipclap (paper) (seed" not in text
    rows = {row["method"]: row for row in csv.DictReader(io.StringIO(render(cells, "csv")))}
    assert rows["hspmoe (paper)"]["seeds"] == "42" and rows["clipclap (paper)"]["seeds"] == ""
    lab = tmp_path / "lab.toml"
    lab.write_text('[datasets.ucf.published]\nhspmoe = { hm = 67.03, seeds = "42" }\n')
    with pytest.raises(ConfigError, match=r"published.hspmoe.seeds.*expected a list of distinct whole numbers"):
        load_catalog(pm, lab)
