"""`clipclap evaluate` (not built yet)."""

from __future__ import annotations

from ._options import not_built


def install(app, pm) -> None:
    @app.command("evaluate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def evaluate():
        """Not built yet."""
        not_built("evaluate", "see the open issue on training and evaluation")
