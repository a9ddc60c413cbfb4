"""`clipclap embed`: label embeddings from the text encoders (not built yet)."""

from __future__ import annotations

from ._options import DatasetArg, not_built


def install(app, pm) -> None:
    @app.command("embed", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def embed(dataset: DatasetArg):
        """Compute CLIP/CLAP label embeddings from prompt templates (not built yet)."""
        not_built("embed", "label-embedding extraction is planned, see the open issue on extraction")
