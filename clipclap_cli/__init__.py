"""clipclap: audio-visual generalized zero-shot learning with CLIP/CLAP features.

The public API for plugin authors is `clipclap_cli.api`; this package re-exports the same names
(one list, `api.__all__`, plus `__version__`), lazily, so that importing it imports no torch.
"""

from clipclap_cli import api as _api

__version__ = "0.3.0"

__all__ = [*_api.__all__, "__version__"]


def __getattr__(name: str):
    if name in _api.__all__:
        return getattr(_api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
