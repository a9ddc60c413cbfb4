"""The feature store: round trips, and writes that are atomic per group."""

from __future__ import annotations

import numpy as np
import pytest

from clipclap_cli.api import FeatureBundle
from clipclap_cli.errors import StoreError
from clipclap_cli.store import FeatureStore


def _bundle(n=10, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return FeatureBundle(
        classes=["a", "b", "c"][:c], prompt_names=["A", "B", "C"][:c], ids=[f"v{i}" for i in range(n)],
        labels=np.arange(n) % c, features={"video": rng.random((n, 4), dtype=np.float32)},
        label_embeddings={"clip": rng.random((c, 2), dtype=np.float32)},
        partition=np.zeros(n, np.int8), provenance={"fingerprint": str(seed)},
    )


def test_round_trip(tmp_path):
    fs = FeatureStore(tmp_path / "s.zarr")
    b = _bundle()
    fs.write_dataset("d", b, {"source": "test"})
    ids, labels, part = fs.read_videos("d")
    assert list(ids) == b.ids and (labels == b.labels).all() and (part == 0).all()
    np.testing.assert_array_equal(fs.read_features("d", "video"), b.features["video"])
    np.testing.assert_array_equal(fs.read_label_embeddings("d", "clip"), b.label_embeddings["clip"])
    assert fs.info("d")["classes"] == ["a", "b", "c"] and fs.info("d")["source"] == "test"


def test_write_killed_half_way_leaves_previous_version(tmp_path, monkeypatch):
    fs = FeatureStore(tmp_path / "s.zarr")
    fs.write_dataset("d", _bundle(seed=1), {})
    old = fs.read_features("d", "video")

    import zarr

    real = zarr.Group.create_array
    calls = {"n": 0}

    def dying(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if killed while writing
        return real(self, *a, **kw)

    monkeypatch.setattr(zarr.Group, "create_array", dying)
    with pytest.raises(KeyboardInterrupt):
        fs.write_dataset("d", _bundle(seed=2), {})
    monkeypatch.undo()
    np.testing.assert_array_equal(fs.read_features("d", "video"), old)
    assert not [p for p in (tmp_path / "s.zarr").iterdir() if p.name.startswith(".")]


def test_group_without_complete_flag_is_not_a_dataset(tmp_path):
    fs = FeatureStore(tmp_path / "s.zarr")
    fs.write_dataset("d", _bundle(), {})
    import zarr

    zarr.open_group(tmp_path / "s.zarr" / "half", mode="w")  # e.g. written by something killed
    assert fs.datasets() == ["d"]
    with pytest.raises(StoreError, match="'half' is not in the store"):
        fs.info("half")
