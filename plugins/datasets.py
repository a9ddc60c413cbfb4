"""Built-in dataset formats: the released CLIP/CLAP feature tree, and the synthetic demo benchmark."""

from __future__ import annotations

import csv
import gzip
import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from clipclap_cli import Sample, hookimpl
from clipclap_cli.api import PARTITIONS, DatasetAdapter, FeatureBundle
from clipclap_cli.errors import ImportDataError
from clipclap_cli.pickles import UnsafePickleError, load_npy_restricted, loads_restricted
from clipclap_cli.splits import ClassResolver, read_class_split


def _split_videos(folder: Path, part: str) -> list[dict[str, str]]:
    """The rows of a split's video list, `PART.csv`, or `PART.csv.gz` as the benchmarks that ship
    with clipclap hold it."""
    path = folder / f"{part}.csv"
    packed = path.with_name(path.name + ".gz")
    try:
        if path.exists() or not packed.exists():
            text = path.read_text()
        else:
            text = gzip.decompress(packed.read_bytes()).decode()
    except FileNotFoundError:
        raise ImportDataError(f"{path}: missing file (the videos of {part})") from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ImportDataError(f"{packed}: damaged ({e})") from None
    return list(csv.DictReader(text.splitlines()))


class _Hasher:
    """Reads files and fingerprints everything read (re-imports of an unchanged tree are no-ops)."""

    def __init__(self):
        self.sha = hashlib.sha256()

    def read(self, path: Path) -> bytes:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImportDataError(f"{path}: missing file") from None
        except IsADirectoryError:
            raise ImportDataError(f"{path}: expected a file, found a folder") from None
        self.sha.update(str(path.name).encode() + b"\0" + data)
        return data


def _sort_key(order: str):
    return (lambda s: s.lower()) if order == "casefold" else (lambda s: s)


class ReleasedFeatures(DatasetAdapter):
    """The released ClipClap feature tree (data.zip): class-split folders, per-class pickles, text npy."""

    kind = "released-features"
    description = "ClipClap's released CLIP/CLAP features (data.zip layout)"

    @dataclass(frozen=True)
    class Params:
        class_names_csv: str = ""
        "The class-name csv under class-split/ (original -> prompt name)"
        prompt_column: str = "manual"
        "Column of that csv holding the name written into prompts"
        class_order: Literal["exact", "casefold"] = "exact"
        "Class ids rank all_class.txt as written (the reference's ids, the split csvs' label_code) or lower-cased"
        features: str = "features/cls_features_non_averaged"
        "Feature folder under the dataset root"
        text_tag: str = ""
        "Suffix of the text npy files: word_embeddings_<tag>_normed.npy"
        split_dir: str = ""
        "`extract`'s default for --split-dir ({benchmarks} and ~ expand); empty: one folder per class"

    def load_features(self, root: Path | None, **options) -> FeatureBundle:
        if root is None or not Path(root).is_dir():
            raise ImportDataError(f"{root}: no such folder (the dataset root of the released features)")
        root = Path(root)
        hasher = _Hasher()
        p = self.params
        all_class = root / "class-split" / "all_class.txt"
        raw = hasher.read(all_class).decode("utf-8", errors="replace").splitlines()
        names = [n.strip() for n in raw if n.strip()]
        if not names:
            raise ImportDataError(f"{all_class}: empty class file")
        classes = sorted(names, key=_sort_key(p.class_order))
        resolver = ClassResolver(classes)
        prompt_names = self._prompt_names(root, resolver, hasher)
        class_splits = {}
        for folder in sorted((root / "class-split").iterdir()):
            if (folder / "stage_1_train.txt").exists():
                for f in sorted(folder.glob("stage_*.txt")):
                    hasher.read(f)
                class_splits[folder.name] = read_class_split(folder, resolver, ImportDataError)
        if not class_splits:
            raise ImportDataError(f"{root / 'class-split'}: no split folder (cls_split/, main_split/)")
        ids, labels, parts, video, audio = self._read_pickles(root / p.features, resolver, hasher)
        emb = {
            "clip": self._read_text(root / p.features / "text" / f"word_embeddings_{p.text_tag}_normed.npy",
                                    prompt_names, self.entry.dims.text_parts[0][1], hasher),
            "clap": self._read_text(root / p.features / "text" / f"wavcaps_word_embeddings_{p.text_tag}_normed.npy",
                                    prompt_names, self.entry.dims.text_parts[1][1], hasher),
        }
        return FeatureBundle(
            classes=classes,
            prompt_names=prompt_names,
            ids=ids,
            labels=np.asarray(labels, dtype=np.int64),
            features={"video": video, "audio": audio},
            label_embeddings=emb,
            partition=np.asarray(parts, dtype=np.int8),
            class_splits=class_splits,
            provenance={"source": str(root.resolve()), "format": self.kind, "fingerprint": hasher.sha.hexdigest()},
        )

    # ------------------------------------------------------------ videos (clipclap extract)
    def samples(self, videos: Path, split_dir: Path | None = None, **options) -> list[Sample]:
        """Without `split_dir`: one folder per class (the UCF101 layout). With a class-split folder
        (ROOT/class-split, holding all_class.txt, the names csv and cls_split/ with stage_*.csv):
        every video its split csv files list, found by file name anywhere under `videos`.
        `split_dir` defaults to the dataset's `split_dir` setting."""
        split_dir = self._split_dir(split_dir)
        if split_dir is None:
            return VideoFolder(self.entry, VideoFolder.Params()).samples(videos)
        videos = Path(videos)
        if not videos.is_dir():
            raise ImportDataError(f"{videos}: no such folder of videos")
        index = {f.stem: f for f in sorted(videos.rglob("*")) if f.suffix.lower() in VIDEO_SUFFIXES}
        resolver = self._split_resolver(split_dir)
        folder = split_dir / self.entry.split
        out, seen = [], set()
        for part in PARTITIONS:
            allowed = set(read_class_split(folder, resolver, ImportDataError)[part])
            for row in _split_videos(folder, part):
                name, label = row.get("filename", "").strip(), resolver.canonical(row.get("label", ""))
                if not name or label is None or label not in allowed or name in seen:
                    continue  # the txt decides which classes a split has
                seen.add(name)
                path = index.get(name)
                out.append(Sample(id=name, label=label, video_path=path, audio_path=path))
        if not out:
            raise ImportDataError(f"{folder}: its csv files list no videos")
        return out

    def describe_samples(self, samples, split_dir: Path | None = None, **options):
        split_dir = self._split_dir(split_dir)
        if split_dir is None:
            return super().describe_samples(samples)
        resolver = self._split_resolver(split_dir)
        hasher = _Hasher()
        prompt_names = self._prompt_names(split_dir.parent, resolver, hasher, split_dir)
        folder = split_dir / self.entry.split
        lists = read_class_split(folder, resolver, ImportDataError)
        part_of = {}
        for code, part in enumerate(PARTITIONS):
            for row in _split_videos(folder, part):
                part_of.setdefault(row.get("filename", "").strip(), code)
        return {"classes": list(resolver.classes), "prompt_names": prompt_names,
                "partition": [part_of.get(s.id, -1) for s in samples], "class_splits": {self.entry.split: lists}}

    def _split_dir(self, given: Path | None) -> Path | None:
        """The class-split folder: the one given (--split-dir), else the dataset's setting."""
        if given is not None:
            return Path(given)
        return self.entry.resolve(self.params.split_dir) if self.params.split_dir else None

    def _split_resolver(self, split_dir: Path) -> ClassResolver:
        all_class = split_dir / "all_class.txt"
        if not all_class.exists():
            raise ImportDataError(f"{all_class}: missing file (--split-dir is a class-split folder)")
        names = [n.strip() for n in all_class.read_text().splitlines() if n.strip()]
        return ClassResolver(sorted(names, key=_sort_key(self.params.class_order)))

    def _prompt_names(self, root: Path, resolver: ClassResolver, hasher: _Hasher,
                      split_dir: Path | None = None) -> list[str]:
        path = (split_dir or root / "class-split") / self.params.class_names_csv
        text = hasher.read(path).decode("utf-8", errors="replace")
        rows = list(csv.DictReader(text.splitlines()))
        column = self.params.prompt_column
        if not rows or "original" not in rows[0] or column not in rows[0]:
            raise ImportDataError(f"{path}: expected columns 'original' and {column!r}")
        by_class = {}
        for row in rows:
            canonical = resolver.canonical(row["original"])
            if canonical is None:
                raise ImportDataError(f"{path}: class {row['original']!r} is not in all_class.txt")
            by_class[canonical] = row[column].strip()
        missing = [c for c in resolver.classes if c not in by_class]
        if missing:
            raise ImportDataError(f"{path}: no prompt name for class {missing[0]!r}")
        return [by_class[c] for c in resolver.classes]

    def _read_pickles(self, features: Path, resolver: ClassResolver, hasher: _Hasher):
        dims = {"video": self.entry.dims.video, "audio": self.entry.dims.audio}
        ids, labels, parts = [], [], []
        rows: dict[str, list[np.ndarray]] = {"video": [], "audio": []}
        for code, part in enumerate(PARTITIONS):
            vdir, adir = features / "video" / part, features / "audio" / part
            for d in (vdir, adir):
                if not d.is_dir():
                    raise ImportDataError(f"{d}: missing folder")
            vfiles = sorted(vdir.glob("*.pkl"))
            if not vfiles:
                raise ImportDataError(f"{vdir}: no class files (*.pkl)")
            extra = sorted({f.name for f in adir.glob("*.pkl")} - {f.name for f in vfiles})
            if extra:
                raise ImportDataError(f"{adir / extra[0]}: audio class file without a video file")
            for vfile in vfiles:
                label = resolver.canonical(vfile.stem)
                if label is None:
                    raise ImportDataError(f"{vfile}: class {vfile.stem!r} is not in all_class.txt")
                v_names, v_feats = self._read_class_file(vfile, dims["video"], hasher)
                a_names, a_feats = self._read_class_file(adir / vfile.name, dims["audio"], hasher)
                if v_names != a_names:
                    if sorted(v_names) != sorted(a_names) or len(set(v_names)) != len(v_names):
                        raise ImportDataError(
                            f"{adir / vfile.name}: its videos differ from {vfile} "
                            f"({len(a_names)} vs {len(v_names)} names)"
                        )
                    where = {n: i for i, n in enumerate(a_names)}
                    a_feats = a_feats[[where[n] for n in v_names]]
                ids.extend(v_names)
                labels.extend([resolver.ids[label]] * len(v_names))
                parts.extend([code] * len(v_names))
                rows["video"].append(v_feats)
                rows["audio"].append(a_feats)
        return (ids, labels, parts,
                np.concatenate(rows["video"]).astype(np.float32),
                np.concatenate(rows["audio"]).astype(np.float32))

    @staticmethod
    def _read_class_file(path: Path, dim: int, hasher: _Hasher) -> tuple[list[str], np.ndarray]:
        data = hasher.read(path)
        try:
            obj = loads_restricted(data)
        except UnsafePickleError as e:
            raise ImportDataError(f"{path}: unsafe pickle, {e}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise ImportDataError(f"{path}: truncated or corrupt pickle ({type(e).__name__})") from None
        if not isinstance(obj, dict) or "features" not in obj or "video_names" not in obj:
            raise ImportDataError(f"{path}: expected a dict with 'features' and 'video_names'")
        feats, names = list(obj["features"]), list(obj["video_names"])
        if not feats:
            raise ImportDataError(f"{path}: empty class file (no videos)")
        if len(feats) != len(names):
            raise ImportDataError(f"{path}: {len(feats)} features but {len(names)} video names")
        try:
            arr = np.stack([np.asarray(f, dtype=np.float32).reshape(-1) for f in feats])
        except ValueError:
            raise ImportDataError(f"{path}: features of different lengths") from None
        if arr.shape[1] != dim:
            raise ImportDataError(f"{path}: features are {arr.shape[1]}-d, expected {dim}")
        names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
        return names, arr

    @staticmethod
    def _read_text(path: Path, prompt_names: list[str], dim: int, hasher: _Hasher) -> np.ndarray:
        data = hasher.read(path)
        try:
            table = load_npy_restricted(data)
        except UnsafePickleError as e:
            raise ImportDataError(f"{path}: unsafe pickle, {e}") from None
        except Exception as e:  # any decoding failure is a corrupt file
            raise ImportDataError(f"{path}: truncated or corrupt npy ({type(e).__name__})") from None
        if not isinstance(table, dict):
            raise ImportDataError(f"{path}: expected a pickled dict {{label text: vector}}")
        out = np.empty((len(prompt_names), dim), dtype=np.float32)
        for i, name in enumerate(prompt_names):
            if name not in table:
                raise ImportDataError(f"{path}: no embedding for prompt name {name!r}")
            vec = np.asarray(table[name], dtype=np.float32).reshape(-1)
            if vec.shape[0] != dim:
                raise ImportDataError(f"{path}: embedding of {name!r} is {vec.shape[0]}-d, expected {dim}")
            out[i] = vec
        return out


class SyntheticBenchmark(DatasetAdapter):
    """A generated benchmark shaped like UCF-GZSL (cls_split) where zero-shot transfer is learnable.

    Every class has a latent vector; video and audio features and both label embeddings are
    fixed random linear maps of it plus noise, so a mapping learnt on seen classes transfers.
    """

    kind = "synthetic"
    description = "Deterministic synthetic benchmark (the built-in demo)"

    @dataclass(frozen=True)
    class Params:
        seed: int = 0
        "Generator seed (same seed, same benchmark)"
        train_classes: int = 30
        "Stage-1 training classes"
        val_unseen_classes: int = 12
        "Stage-1 validation-unseen classes"
        test_unseen_classes: int = 6
        "Stage-2 test-unseen classes"
        videos_per_class: int = 140
        "Mean videos per class"
        latent_dim: int = 24
        "Width of the shared latent class vectors"
        noise: float = 1.2
        "Per-video noise relative to the class signal"

    def load_features(self, root: Path | None, **options) -> FeatureBundle:
        p = self.params
        seed = int(options.get("seed", p.seed))
        rng = np.random.default_rng(seed)
        dims = self.entry.dims
        n_cls = p.train_classes + p.val_unseen_classes + p.test_unseen_classes
        latent = rng.standard_normal((n_cls, p.latent_dim))
        maps = {name: rng.standard_normal((p.latent_dim, d)) / np.sqrt(p.latent_dim)
                for name, d in (("video", dims.video), ("audio", dims.audio), *dims.text_parts)}
        classes = [f"class_{i:03d}" for i in range(n_cls)]
        order = rng.permutation(n_cls)
        train, val_unseen, test_unseen = (np.sort(order[: p.train_classes]),
                                          np.sort(order[p.train_classes: p.train_classes + p.val_unseen_classes]),
                                          np.sort(order[p.train_classes + p.val_unseen_classes:]))
        counts = rng.integers(int(p.videos_per_class * 0.7), int(p.videos_per_class * 1.3) + 1, size=n_cls)
        labels, parts = [], []
        code = {name: i for i, name in enumerate(PARTITIONS)}
        for c in range(n_cls):
            n = int(counts[c])
            if c in test_unseen:
                cls_parts = ["stage_2_test_unseen"] * n
            else:
                n_test = max(1, round(n * 0.1))
                first = "stage_1_val_unseen" if c in val_unseen else "stage_1_train"
                n_val = 0 if c in val_unseen else max(1, round(n * 0.1))
                cls_parts = (["stage_2_test_seen"] * n_test + ["stage_1_val_seen"] * n_val
                             + [first] * (n - n_test - n_val))
            labels.extend([c] * n)
            parts.extend(code[x] for x in cls_parts)
        labels = np.asarray(labels)
        z = latent[labels] + p.noise * rng.standard_normal((len(labels), p.latent_dim))
        video = z @ maps["video"] + 0.1 * rng.standard_normal((len(labels), dims.video))
        video /= np.linalg.norm(video, axis=1, keepdims=True)
        audio = z @ maps["audio"] + 0.1 * rng.standard_normal((len(labels), dims.audio))
        emb = {}
        for name, d in dims.text_parts:
            e = latent @ maps[name] + 0.05 * rng.standard_normal((n_cls, d))
            emb[name] = (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)
        names = [classes[c] for c in range(n_cls)]
        lists = {
            "stage_1_train": [names[c] for c in train],
            "stage_1_val_seen": [names[c] for c in train],
            "stage_1_val_unseen": [names[c] for c in val_unseen],
            "stage_2_train": sorted(names[c] for c in np.union1d(train, val_unseen)),
            "stage_2_test_seen": sorted(names[c] for c in np.union1d(train, val_unseen)),
            "stage_2_test_unseen": [names[c] for c in test_unseen],
        }
        return FeatureBundle(
            classes=classes,
            prompt_names=[n.replace("_", " ") for n in classes],
            ids=[f"demo_{i:05d}" for i in range(len(labels))],
            labels=labels,
            features={"video": video.astype(np.float32), "audio": audio.astype(np.float32)},
            label_embeddings=emb,
            partition=np.asarray(parts, dtype=np.int8),
            class_splits={"cls_split": lists},
            provenance={"source": f"synthetic(seed={seed})", "format": self.kind,
                        "fingerprint": hashlib.sha256(repr((seed, p, dims)).encode()).hexdigest()},
        )


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")


class VideoFolder(DatasetAdapter):
    """Videos in one folder per class (the UCF101 layout): VIDEOS/<Class>/<video>.<ext>.

    The video id is `<Class>/<file stem>`; the class is the folder name. Features come from
    `clipclap extract`; a split from `clipclap split --from CLASS_SPLIT_DIR` or `--seen/--unseen`.
    """

    kind = "video-folder"
    description = "Videos in one folder per class (UCF101 layout), for `clipclap extract`"

    @dataclass(frozen=True)
    class Params:
        suffixes: str = ",".join(VIDEO_SUFFIXES)
        "File name endings counted as videos (comma-separated)"

    def samples(self, videos: Path, **options) -> list[Sample]:
        if options.get("split_dir") is not None:
            raise ImportDataError(f"dataset {self.entry.name!r} ({self.kind}) takes its classes from the class "
                                  "folders, not from --split-dir; after extracting, `clipclap split --from DIR` "
                                  "writes the folder's protocol split")
        videos = Path(videos)
        if not videos.is_dir():
            raise ImportDataError(f"{videos}: no such folder of videos")
        suffixes = tuple(x.strip().lower() for x in self.params.suffixes.split(",") if x.strip())
        out = [Sample(id=f"{folder.name}/{f.stem}", label=folder.name, video_path=f, audio_path=f)
               for folder in sorted(p for p in videos.iterdir() if p.is_dir())
               for f in sorted(folder.iterdir()) if f.suffix.lower() in suffixes]
        if not out:
            raise ImportDataError(f"{videos}: no videos ({', '.join(suffixes)}) in class folders")
        return out


@hookimpl
def register_datasets(register):
    register(ReleasedFeatures)
    register(SyntheticBenchmark)
    register(VideoFolder)
