"""Writes a tree in the released-features layout (data.zip) from the public class splits.

Real class names and split files, random feature numbers. Used by the import tests.
"""

from __future__ import annotations

import csv
import pickle
import shutil
from pathlib import Path

import numpy as np

from clipclap_cli.api import PARTITIONS
from shared_material import BENCHMARKS


def _videos_by_class(csv_path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with csv_path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["label"].casefold(), []).append(row["filename"])
    return out


def write_released_tree(
    root: Path,
    benchmark: str,
    text_tag: str,
    names_csv: str,
    prompt_column: str,
    seed: int = 0,
    split: str = "cls_split",
    max_per_class: int | None = None,
    classes: list[str] | None = None,
) -> dict:
    """Write ROOT/class-split and ROOT/features; return {partition: {class file stem: (names, video, audio)}}."""
    rng = np.random.default_rng(seed)
    src = BENCHMARKS / benchmark / "class-split"
    shutil.copytree(src, root / "class-split", ignore=shutil.ignore_patterns("*.csv"))
    shutil.copy(src / names_csv, root / "class-split" / names_csv)
    feats = root / "features" / "cls_features_non_averaged"
    written: dict = {}
    for part in PARTITIONS:
        stems = [ln.strip() for ln in (src / split / f"{part}.txt").read_text().splitlines() if ln.strip()]
        if classes is not None:
            stems = [s for s in stems if s in classes]
        videos = _videos_by_class(src / split / f"{part}.csv")
        written[part] = {}
        for mod in ("video", "audio"):
            (feats / mod / part).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            names = videos[stem.casefold()][:max_per_class]
            v = [rng.standard_normal(512).astype(np.float32) for _ in names]
            v = [x / np.linalg.norm(x) for x in v]
            a = [rng.standard_normal(1024).astype(np.float32) for _ in names]
            fps = [25] * len(names)
            with (feats / "video" / part / f"{stem}.pkl").open("wb") as fh:
                pickle.dump({"features": v, "video_names": names, "fps": fps}, fh)
            with (feats / "audio" / part / f"{stem}.pkl").open("wb") as fh:
                # bytes names, as some released files have them
                pickle.dump({"features": a, "video_names": [n.encode() for n in names], "fps": fps}, fh)
            written[part][stem] = (names, np.stack(v), np.stack(a))
    with (src / names_csv).open(newline="") as fh:
        prompt_names = [row[prompt_column] for row in csv.DictReader(fh)]
    text = feats / "text"
    text.mkdir(parents=True)
    clip = {n: rng.standard_normal(512).astype(np.float32) for n in prompt_names}
    clap = {n: rng.standard_normal(1024).astype(np.float32) for n in prompt_names}
    np.save(text / f"word_embeddings_{text_tag}_normed.npy", clip, allow_pickle=True)
    np.save(text / f"wavcaps_word_embeddings_{text_tag}_normed.npy", clap, allow_pickle=True)
    written["text"] = {"clip": clip, "clap": clap}
    return written
