"""`clipclap extract`: CLIP/CLAP features from videos (not built yet)."""

from __future__ import annotations

from ._options import DatasetArg, not_built


def install(app, pm) -> None:
    @app.command("extract", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def extract(dataset: DatasetArg):
        """Extract CLIP visual and CLAP audio features from videos into the store (not built yet)."""
        not_built("extract", "feature extraction is planned, see the open issue on extraction")
