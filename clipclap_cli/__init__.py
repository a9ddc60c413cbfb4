"""clipclap: audio-visual generalized zero-shot learning with CLIP/CLAP features.

Public API for plugin authors: `hookimpl`, the contracts `DatasetAdapter`, `Encoder`,
`FusionHead` (lazy, it imports torch), the errors, and the registry accessors.
"""

from .api import PARTITIONS, DatasetAdapter, Encoder, FeatureBundle, FeatureDims, Sample
from .errors import ClipclapError
from .hookspecs import hookimpl
from .registries import create_head, get_encoder, get_head, list_encoders, list_heads

__version__ = "0.1.0"

__all__ = [
    "PARTITIONS", "ClipclapError", "DatasetAdapter", "Encoder", "FeatureBundle", "FeatureDims",
    "FusionHead", "Sample", "__version__", "create_head", "get_encoder", "get_head", "hookimpl",
    "list_encoders", "list_heads",
]


def __getattr__(name: str):
    if name == "FusionHead":
        from .heads_base import FusionHead

        return FusionHead
    raise AttributeError(name)
