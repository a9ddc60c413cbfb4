"""`clipclap report` (not built yet)."""

from __future__ import annotations

from ._options import not_built


def install(app, pm) -> None:
    @app.command("report", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def report():
        """Not built yet."""
        not_built("report", "see the open issue on training and evaluation")
