"""Where the tests find the shared material: the reference's goldens and the public benchmarks.

By default `../shared` beside the checkout (the layout the project is developed in);
`CLIPCLAP_SHARED=DIR` points elsewhere. The material is read in place, never copied.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("CLIPCLAP_SHARED") or Path(__file__).resolve().parents[2] / "shared")
GOLDENS = SHARED / "goldens"
BENCHMARKS = SHARED / "benchmarks"


def missing() -> str | None:
    """A one-line reason when the material is not there, else None."""
    absent = [p for p in (GOLDENS, BENCHMARKS) if not p.is_dir()]
    if not absent:
        return None
    return (f"the tests need the shared material ({', '.join(str(p) for p in absent)} not found): "
            "put it at ../shared beside the checkout or set CLIPCLAP_SHARED=DIR")
