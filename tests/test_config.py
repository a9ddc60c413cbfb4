"""datasets.toml: the project's entries, user overrides, and errors naming file, table and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipclap_cli.data.datasets_toml import load_catalog
from clipclap_cli.errors import ConfigError, ParamError
from clipclap_cli.params import parse_params
from shared_material import BENCHMARKS, SHARED


def test_project_entries_follow_spec(pm):
    cat = load_catalog(pm)
    assert {"ucf", "activitynet", "vggsound", "demo"} <= set(cat.names())
    ucf, anet, vgg = cat.get("ucf"), cat.get("activitynet"), cat.get("vggsound")
    u, a, v = ucf.train_settings, anet.train_settings, vgg.train_settings
    assert (u.lr, u.epochs) == (7e-5, 20)
    assert (a.lr, a.epochs) == (1e-4, 15) == (v.lr, v.epochs)
    assert u.batch_size == 64 and u.batches_per_epoch == 300 and u.seed == 42
    assert ucf.split == "cls_split" and ucf.params.prompt_column == "clip_class_name"
    assert anet.params.prompt_column == "manual"
    assert ucf.params.class_order == anet.params.class_order == vgg.params.class_order == "exact"
    assert ucf.dims.text == 1536 and ucf.resolve(ucf.prompts).exists()


def _spec_published() -> dict[str, dict[str, dict[str, float]]]:
    """SPEC.md's table of published results, and its line of ClipClap's S / U, as
    {dataset: {head: {metric: percent}}} (datasets.toml names, head ids)."""
    text = (SHARED / "SPEC.md").read_text()
    table = text.split("Published results to reproduce")[1].split("\n\n")[1].splitlines()
    datasets = [c.split("-GZSL")[0].strip().lower() for c in table[0].split("|")[2:-1]]
    out: dict[str, dict] = {d: {} for d in datasets}
    for row in table[2:]:
        method, *cells = [c.strip() for c in row.split("|")[1:-1]]
        for dataset, cell in zip(datasets, cells, strict=True):
            hm, zsl = (float(v) for v in cell.split("/"))
            out[dataset][method.lower()] = {"hm": hm, "zsl": zsl}
    su = text.split("ClipClap's seen/unseen accuracies:")[1].split("\n")[0].rstrip(".")
    for part in su.split(","):
        name, seen, _, unseen = part.split()
        out[name.lower()]["clipclap"] |= {"seen": float(seen), "unseen": float(unseen)}
    return out


def test_published_results_are_the_papers(pm):
    """`report --published` shows datasets.toml's `published` tables: they must be SPEC.md's, and
    HSP-MoE's, which SPEC.md predates (their README's: tests/test_hspmoe.py)."""
    cat = load_catalog(pm)
    want = _spec_published()
    assert set(want) == {"ucf", "activitynet", "vggsound"} and len(want["ucf"]) == 5
    assert {name: {h: v for h, v in cat.get(name).published.items() if h != "hspmoe"} for name in want} == want
    assert all(set(cat.get(name).published) == {*want[name], "hspmoe"} for name in want)
    assert cat.get("demo").published == {}


def test_user_file_overrides_and_adds(pm, tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[datasets.ucf]\ntrain = { epochs = 3 }\n\n[datasets.extra]\nkind = "synthetic"\nseed = 5\n')
    cat = load_catalog(pm, user)
    assert cat.get("ucf").train_settings.epochs == 3 and cat.get("ucf").train_settings.lr == 7e-5
    assert cat.get("extra").params.seed == 5 and cat.get("extra").origin == str(user)
    assert cat.get("ucf").videos is None and cat.get("extra").videos is None
    user.write_text('[datasets.ucf]\nvideos = "~/UCF-101"\nsplit_dir = "{benchmarks}/UCF/class-split"\n')
    ucf = load_catalog(pm, user).get("ucf")
    assert ucf.resolve(ucf.videos) == Path.home() / "UCF-101"
    assert ucf.resolve(ucf.params.split_dir) == BENCHMARKS / "UCF" / "class-split"


@pytest.mark.parametrize("body, needles", [
    ('[datasets.x]\nkind = "synthetik"\n', ["[datasets.x] kind='synthetik'", "Did you mean 'synthetic'?"]),
    ('[datasets.x]\nkind = "synthetic"\ncolour = "red"\n', ["[datasets.x]", "unknown parameter 'colour'"]),
    ('[datasets.x]\nkind = "synthetic"\ntrain = { epochz = 3 }\n', ["[datasets.x] train.epochz", "unknown"]),
    ('[datasets.x]\nkind = "synthetic"\ndims = { video = -1 }\n', ["[datasets.x] dims.video", "positive integer"]),
    ('[datasets.x]\nkind = "synthetic"\nhead_train.tcaf = { lrr = 1 }\n',
     ["[datasets.x] head_train.tcaf.lrr", "unknown"]),
    ('[datasets.x]\nkind = "synthetic"\nhead_train.tcaf = { lr_scheduler = "maybe" }\n',
     ["[datasets.x] head_train.tcaf", "expected true or false"]),
    ('[datasets.x]\nkind = "synthetic"\ntrain = { epochs = 0 }\n', ["[datasets.x] train.epochs", "at least 1, not 0"]),
    ('[datasets.x]\nkind = "synthetic"\nhead_train.tcaf = { lr = 0.0 }\n',
     ["[datasets.x] head_train.tcaf.lr", "must be positive, not 0.0"]),
    ('[datasets.x]\ndisplay_name = "no kind"\n', ["[datasets.x] kind: missing"]),
    ('[datasets.x]\nkind = "synthetic"\nvideos = 3\n', ["[datasets.x] videos", "expected a path (a string), got 3"]),
    ('[datasets.x]\nkind = "synthetic"\npublished.clipclap = { hm = 120 }\n',
     ["[datasets.x] published.clipclap.hm", "a percentage from 0 to 100, got 120"]),
    ('[datasets.x]\nkind = "synthetic"\npublished.clipclap = { acc = 50 }\n',
     ["[datasets.x] published.clipclap.acc", "unknown; valid: seen, unseen, hm, zsl"]),
    ('[datasets.x]\nkind = "synthetic"\npublished = 3\n', ["[datasets.x] published", "one table per head"]),
    ('[datasets.x\n', ["not valid TOML"]),
])
def test_errors_name_file_table_and_key(pm, tmp_path, body, needles):
    user = tmp_path / "bad.toml"
    user.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_catalog(pm, user)
    assert str(user) in str(e.value)
    for needle in needles:
        assert needle in str(e.value)


def test_cli_reports_config_error(cli, tmp_path):
    user = tmp_path / "bad.toml"
    user.write_text('[datasets.x]\nkind = "nope"\n')
    r = cli("datasets", "list", "--datasets", user)
    assert r.exit_code == 1 and str(user) in r.stderr and "[datasets.x]" in r.stderr


def test_parse_params():
    from clipclap_plugins.clipclap_head import ClipClapHead

    p = parse_params(["modality=audio", "dropout=0.2", "hidden=256"], ClipClapHead.Params)
    assert (p.modality, p.dropout, p.hidden) == ("audio", 0.2, 256)
    with pytest.raises(ParamError, match="expected one of both, audio, video"):
        parse_params(["modality=smell"], ClipClapHead.Params)
    with pytest.raises(ParamError, match="unknown parameter 'hiden'"):
        parse_params(["hiden=3"], ClipClapHead.Params)
    with pytest.raises(ParamError, match="not KEY=VALUE"):
        parse_params(["hidden"], ClipClapHead.Params)


@pytest.mark.parametrize(("head", "pair", "message"), [
    ("clipclap", "hidden=0", "parameter hidden=0: expected at least 1"),
    ("clipclap", "dim_out=-3", "parameter dim_out=-3: expected at least 1"),
    ("clipclap", "dropout=1.0", "parameter dropout=1.0: expected 0 <= dropout < 1"),
    ("clipclap", "dropout=-0.1", "parameter dropout=-0.1: expected 0 <= dropout < 1"),
    ("tcaf", "heads=0", "parameter heads=0: expected at least 1"),
    ("hyper-multiple", "width=0", "parameter width=0: expected at least 1"),  # its base class's check
    ("hyper-multiple", "num_curvature=0", "parameter num_curvature=0: expected at least 1"),
    ("avgzslnet", "decoder_dropout=1.5", "parameter decoder_dropout=1.5: expected 0 <= decoder_dropout < 1"),
])
def test_head_parameters_out_of_range_are_one_clear_error(pm, head, pair, message):
    from clipclap_cli.plugins.registry import get_head

    params_cls = get_head(head, pm).Params
    with pytest.raises(ParamError) as e:
        parse_params([pair], params_cls)
    assert str(e.value) == message
    key, value = pair.split("=")
    edge = {"0": "1", "-3": "1", "1.0": "0.99", "-0.1": "0.0", "1.5": "0.0"}[value]
    assert getattr(parse_params([f"{key}={edge}"], params_cls), key) == type(getattr(params_cls(), key))(edge)
