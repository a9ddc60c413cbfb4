"""The two-stage GZSL protocol splits: from class-split folders, or drawn afresh. Pure functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clipclap_cli.api import PARTITIONS
from clipclap_cli.errors import SplitError

#: Class lists of a class-split folder (the txt files), stage_2_train included.
STAGE_FILES = (
    "stage_1_train",
    "stage_1_val_seen",
    "stage_1_val_unseen",
    "stage_2_train",
    "stage_2_test_seen",
    "stage_2_test_unseen",
)


class ClassResolver:
    """Maps class names to canonical names case-insensitively (UCF `HandStandPushups`)."""

    def __init__(self, classes: list[str], source: str = "all_class.txt"):
        self.classes, self.source = list(classes), source  # `source`: where the classes come from, for errors
        self._by_key = {c.casefold(): c for c in classes}
        self.ids = {c: i for i, c in enumerate(classes)}

    def canonical(self, name: str) -> str | None:
        return self._by_key.get(name.strip().casefold())


def read_class_list(path: Path, resolver: ClassResolver, error: type[Exception] = SplitError) -> list[str]:
    """Read one class-split txt file; every class must be known; the file must not be empty."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise error(f"{path}: missing class-split file") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a UTF-8 text file") from None
    names = [ln for ln in lines if ln]
    if not names:
        raise error(f"{path}: empty class file")
    out = []
    for name in names:
        canonical = resolver.canonical(name)
        if canonical is None:
            raise error(f"{path}: class {name!r} is not in {resolver.source}")
        out.append(canonical)
    return out


def find_split_folder(base: Path, split: str) -> Path:
    """`base/<split>` when it exists, else `base` itself if it holds the stage files."""
    for candidate in (base / split, base / "class-split" / split, base):
        if (candidate / "stage_1_train.txt").exists():
            return candidate
    raise SplitError(f"{base}: no class-split folder {split!r} (expected {base / split}/stage_1_train.txt)")


def read_class_split(folder: Path, resolver: ClassResolver,
                     error: type[Exception] = SplitError) -> dict[str, list[str]]:
    """All stage class lists of one split folder (stage_2_train is derived when absent)."""
    lists = {}
    for stage in STAGE_FILES:
        path = folder / f"{stage}.txt"
        if stage == "stage_2_train" and not path.exists():
            continue
        lists[stage] = read_class_list(path, resolver, error)
    return lists


def classes_by_stage(lists: dict[str, list[str]], resolver: ClassResolver) -> dict[str, list[int]]:
    """Class ids per stage, checked for the protocol's structure."""
    ids = {k: sorted({resolver.ids[c] for c in v}) for k, v in lists.items()}
    derived = sorted(set(ids["stage_1_train"]) | set(ids["stage_1_val_unseen"]))
    if "stage_2_train" in ids and ids["stage_2_train"] != derived:
        raise SplitError("stage_2_train.txt is not stage_1_train + stage_1_val_unseen")
    ids["stage_2_train"] = derived
    if set(ids["stage_1_train"]) & set(ids["stage_1_val_unseen"]):
        raise SplitError("stage_1_val_unseen shares classes with stage_1_train")
    if set(ids["stage_2_train"]) & set(ids["stage_2_test_unseen"]):
        raise SplitError("stage_2_test_unseen shares classes with stage_2_train")
    return ids


def split_from_partitions(
    labels: np.ndarray, partition: np.ndarray, classes: dict[str, list[int]]
) -> dict[str, np.ndarray]:
    """Video indices of each partition: videos of that partition whose class the stage lists."""
    if (partition < 0).all():
        raise SplitError(
            "the dataset's videos carry no protocol partition; "
            "draw a split instead with --seen N --unseen M --seed S"
        )
    out = {}
    for code, p in enumerate(PARTITIONS):
        mask = (partition == code) & np.isin(labels, classes[p])
        out[p] = np.flatnonzero(mask).astype(np.int64)
        if not len(out[p]):
            raise SplitError(f"the split leaves {p} without videos")
    return out


#: The partitions each stage trains on, by its class list (SPEC.md "Benchmarks and splits").
TRAINING_VIDEOS = {
    "stage_1_train": ("stage_1_train",),
    "stage_2_train": ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen"),
}


def check_training_videos(indices: dict[str, np.ndarray], classes: dict[str, list[int]], labels: np.ndarray,
                          class_names: list[str], where: str) -> None:
    """Refuse a split whose training classes lack training videos (say, extraction missed them
    all): class-balanced sampling draws every training class, so training could not start."""
    lacking = []
    for stage, partitions in TRAINING_VIDEOS.items():
        present = np.unique(labels[np.concatenate([indices[p] for p in partitions])])
        missing = np.setdiff1d(np.asarray(classes[stage], dtype=np.int64), present)
        if len(missing):
            lacking.append(f"{stage}: " + ", ".join(class_names[c] for c in missing))
    if lacking:
        raise SplitError(f"{where} has training classes without training videos ({'; '.join(lacking)}), which "
                         "class-balanced sampling cannot draw: extract their videos, or write another split")


def check_scorable(indices: dict[str, np.ndarray], classes: dict[str, list[int]], labels: np.ndarray,
                   class_names: list[str], where: str) -> None:
    """Refuse a split that cannot be scored honestly: a class a partition lists without any of
    its videos there (it would count 0 % in every average over that partition's classes), or
    class sets that break the protocol (seen and unseen classes shared, validation or test-seen
    classes that their stage does not train on). The message names the classes."""
    def named(ids) -> str:
        ids = sorted(int(c) for c in ids)
        shown = ", ".join(class_names[c] for c in ids[:5])
        return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")

    problems = []
    for p in PARTITIONS:
        present = np.unique(labels[indices[p]]) if len(indices[p]) else np.array([], dtype=np.int64)
        listed = np.asarray(classes.get(p, []), dtype=np.int64)
        empty = np.setdiff1d(listed, present)
        if len(empty):
            problems.append(f"{p} lists {len(empty)} class(es) without videos there ({named(empty)})")
        stray = np.setdiff1d(present, listed)
        if len(stray):
            problems.append(f"{p} holds videos of classes it does not list ({named(stray)})")
    train1, train2 = set(classes.get("stage_1_train", [])), set(classes.get("stage_2_train", []))
    rules = (("stage_1_val_unseen", train1, "are stage-1 training classes"),
             ("stage_2_test_unseen", train2, "are stage-2 training classes"))
    for p, trained, says in rules:
        shared = set(classes.get(p, [])) & trained
        if shared:
            problems.append(f"{p} classes {named(shared)} {says}")
    for p, trained, stage in (("stage_1_val_seen", train1, 1), ("stage_2_test_seen", train2, 2)):
        untrained = set(classes.get(p, [])) - trained
        if untrained:
            problems.append(f"{p} classes {named(untrained)} are not stage-{stage} training classes")
    if problems:
        raise SplitError(f"{where} cannot be scored honestly: {'; '.join(problems)}")


def draw_split(
    labels: np.ndarray,
    num_classes: int,
    seen: int,
    unseen: int,
    seed: int,
    val_unseen: int | None = None,
    held_out: float = 0.1,
) -> tuple[dict[str, np.ndarray], dict[str, list[int]], dict[str, Any]]:
    """Draw a two-stage split with the benchmark's structure.

    `seen` classes are stage-2 training classes (stage-1 train + stage-1 val-unseen), `unseen`
    are stage-2 test-unseen classes. Of each seen class, `held_out` of the videos go to
    stage-2 test-seen; of each stage-1 train class, another `held_out` to stage-1 val-seen.
    """
    present = np.unique(labels)
    val_unseen = max(1, round(seen / 3)) if val_unseen is None else val_unseen
    if seen < 2 or unseen < 1 or val_unseen < 1 or val_unseen >= seen:
        raise SplitError("need --seen >= 2, --unseen >= 1 and 1 <= val-unseen < seen")
    if seen + unseen > len(present):
        raise SplitError(f"--seen {seen} + --unseen {unseen} exceeds the {len(present)} classes with videos")
    rng = np.random.default_rng(seed)
    order = rng.permutation(present)
    stage2_seen, test_unseen = np.sort(order[:seen]), np.sort(order[seen : seen + unseen])
    val_unseen_cls = np.sort(rng.choice(stage2_seen, size=val_unseen, replace=False))
    train_cls = np.setdiff1d(stage2_seen, val_unseen_cls)
    parts: dict[str, list[int]] = {p: [] for p in PARTITIONS}
    for c in stage2_seen:
        vids = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(len(vids) * held_out)
        parts["stage_2_test_seen"].extend(vids[:n_test])
        rest = vids[n_test:]
        if c in val_unseen_cls:
            parts["stage_1_val_unseen"].extend(rest)
        else:
            n_val = round(len(vids) * held_out)
            parts["stage_1_val_seen"].extend(rest[:n_val])
            parts["stage_1_train"].extend(rest[n_val:])
    for c in test_unseen:
        parts["stage_2_test_unseen"].extend(np.flatnonzero(labels == c))
    indices = {p: np.sort(np.asarray(v, dtype=np.int64)) for p, v in parts.items()}
    for p, idx in indices.items():
        if not len(idx):  # only the held-out partitions can end up empty: round(n * held_out) == 0
            largest = max(int((labels == c).sum()) for c in stage2_seen)
            raise SplitError(
                f"the drawn split leaves {p} without videos: it takes {held_out:.0%} of each seen class's "
                f"videos, rounded, which is none for the largest seen class drawn ({largest} videos); "
                "extract more videos per class")
    classes = {
        "stage_1_train": train_cls.tolist(),
        "stage_1_val_seen": train_cls.tolist(),
        "stage_1_val_unseen": val_unseen_cls.tolist(),
        "stage_2_train": stage2_seen.tolist(),
        "stage_2_test_seen": stage2_seen.tolist(),
        "stage_2_test_unseen": test_unseen.tolist(),
    }
    how = {"method": "drawn", "seed": seed, "seen": seen, "unseen": unseen,
           "val_unseen": val_unseen, "held_out": held_out}
    return indices, classes, how
