"""`clipclap train` (not built yet)."""

from __future__ import annotations

from ._options import not_built


def install(app, pm) -> None:
    @app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def train():
        """Not built yet."""
        not_built("train", "see the open issue on training and evaluation")
