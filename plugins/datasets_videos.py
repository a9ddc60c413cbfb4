"""The `video-folder` format: a folder of videos per class (the UCF101 layout), for `extract`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clipclap_cli.api import DatasetAdapter, ImportDataError, KindExample, Sample

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

    @classmethod
    def example(cls, folder: Path) -> KindExample:
        """Three class folders of two (empty) videos each: `samples` reads names, not the files."""
        for label in ("Archery", "Bowling", "Diving"):
            (folder / label).mkdir(parents=True)
            for k in range(2):
                (folder / label / f"v_{label}_{k}.mp4").touch()
        return KindExample({}, videos=folder)

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
