"""clipclap: audio-visual generalized zero-shot learning with CLIP/CLAP features.

Public API for plugin authors: `hookimpl`, the contracts `DatasetAdapter`, `Encoder`,
`FusionHead` (lazy, it imports torch), the errors, the registry accessors, `LABEL_PARTS` (the
label embeddings a head can read) and `check_ranges` (for a Params' `__post_init__`).
"""

from clipclap_cli.api import (
    LABEL_PARTS,
    PARTITIONS,
    DatasetAdapter,
    Encoder,
    FeatureBundle,
    FeatureDims,
    KindExample,
    Sample,
)
from clipclap_cli.errors import ClipclapError
from clipclap_cli.params import check_ranges
from clipclap_cli.plugins.hookspecs import hookimpl
from clipclap_cli.plugins.registry import create_head, get_encoder, get_head, list_encoders, list_heads

__version__ = "0.3.0"

__all__ = [
    "LABEL_PARTS", "PARTITIONS", "ClipclapError", "DatasetAdapter", "Encoder", "FeatureBundle", "FeatureDims",
    "FusionHead", "KindExample", "Sample", "__version__", "check_ranges", "create_head", "get_encoder", "get_head",
    "hookimpl", "list_encoders", "list_heads",
]


def __getattr__(name: str):
    if name == "FusionHead":
        from clipclap_cli.plugins.fusion_head import FusionHead

        return FusionHead
    raise AttributeError(name)
