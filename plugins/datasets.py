"""Built-in dataset formats, one module each: the released CLIP/CLAP feature tree
(datasets_released), the synthetic demo benchmark (datasets_synthetic) and a folder of videos
per class (datasets_videos)."""

from __future__ import annotations

from clipclap_cli.api import hookimpl
from clipclap_plugins.datasets_released import ReleasedFeatures
from clipclap_plugins.datasets_synthetic import SyntheticBenchmark
from clipclap_plugins.datasets_videos import VideoFolder


@hookimpl
def register_dataset_kinds(register):
    register(ReleasedFeatures)
    register(SyntheticBenchmark)
    register(VideoFolder)
