"""The `released-features` format: ClipClap's released CLIP/CLAP feature tree (data.zip), with
the class splits it ships, read with a restricted unpickler; and its videos, for `extract`."""

from __future__ import annotations

import csv
import gzip
import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from clipclap_cli.api import (
    PARTITIONS,
    ClassResolver,
    DatasetAdapter,
    FeatureBundle,
    ImportDataError,
    KindExample,
    Sample,
    read_class_split,
)
from clipclap_plugins.datasets_videos import VIDEO_SUFFIXES, VideoFolder
from clipclap_plugins.pickles import UnsafePickleError, load_npy_restricted, loads_restricted


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

    @classmethod
    def example(cls, folder: Path) -> KindExample:
        """A tiny released tree in `folder` (8 generated classes, 2 videos per class and partition,
        small random widths) for the contract kit: `root` for `import`, and `videos` (empty
        placeholder files that `samples` finds by name through the split csvs) for `extract`."""
        return _write_example(Path(folder))

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


def _write_example(folder: Path) -> KindExample:
    """Write ReleasedFeatures.example's tree: the protocol's class lists (val/test seen classes are
    trained on, unseen ones are not), per-class pickles, text npy files, split csvs and videos."""
    rng = np.random.default_rng(0)
    dims = {"audio": 12, "video": 10, "clip": 8, "clap": 6}
    classes = [f"Class{c}" for c in "ABCDEFGH"]
    lists = {"stage_1_train": classes[:4], "stage_1_val_seen": classes[:4], "stage_1_val_unseen": classes[4:6],
             "stage_2_test_seen": classes[:6], "stage_2_test_unseen": classes[6:]}
    split, feats, videos = folder / "class-split", folder / "features" / "cls_features_non_averaged", folder / "videos"
    for d in (split / "cls_split", feats / "text", videos):
        d.mkdir(parents=True, exist_ok=True)
    (split / "all_class.txt").write_text("\n".join(classes) + "\n")
    (split / "tiny_class_names.csv").write_text("original,manual\n" + "".join(f"{c},class {c[-1]}\n" for c in classes))
    for part, names in lists.items():
        (split / "cls_split" / f"{part}.txt").write_text("\n".join(names) + "\n")
        rows = ["filename,label"]
        for c in names:
            vids = [f"v_{c}_{part}_{k}" for k in range(2)]
            rows += [f"{v},{c}" for v in vids]
            for v in vids:
                (videos / f"{v}.mp4").touch()
            for mod in ("video", "audio"):
                (feats / mod / part).mkdir(parents=True, exist_ok=True)
                arr = rng.standard_normal((len(vids), dims[mod])).astype(np.float32)
                with (feats / mod / part / f"{c}.pkl").open("wb") as fh:
                    pickle.dump({"features": list(arr), "video_names": vids, "fps": [25] * len(vids)}, fh)
        (split / "cls_split" / f"{part}.csv").write_text("\n".join(rows) + "\n")
    for prefix, width in (("", dims["clip"]), ("wavcaps_", dims["clap"])):
        table = {f"class {c[-1]}": rng.standard_normal(width).astype(np.float32) for c in classes}
        np.save(feats / "text" / f"{prefix}word_embeddings_tiny_normed.npy", table, allow_pickle=True)
    table = {"split": "cls_split", "class_names_csv": "tiny_class_names.csv", "prompt_column": "manual",
             "text_tag": "tiny", "split_dir": str(split), "dims": dims}
    return KindExample(table=table, root=folder, videos=videos)
