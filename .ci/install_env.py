"""Install the development environment (`make install`): `pip install ARGS`, with the work pip
does one wheel at a time spread over two processes, and the modules every command imports
byte-compiled while pip finishes.

Usage: `.venv/bin/python .ci/install_env.py [pip install arguments]`, in the environment to fill.

Why: torch's CUDA build is 3 GB of wheels (torch, cuDNN, cuBLAS, triton, ...). pip unpacks them
one after the other on one core, which was half of the install. Here pip resolves the whole
request once (`--dry-run --report`), the wheels it chose are installed by two `pip install
--no-deps` processes at once, each taking about half of the bytes, and then the request is
installed as asked, by pip alone: it finds the wheels in place, installs what is left (the
editable project) and checks the environment, so the result is pip's own. The install does not
byte-compile (`--no-compile`, see the Makefile); while that last pip runs, two processes import
what the commands and the tests import, so that their bytecode is written once, on both cores,
instead of by each test worker as it starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

PIP = [sys.executable, "-m", "pip"]
#: two sets of modules that share no package (the second does not import torch), compiled side by side
WARM_UP = ("import torch, torch._dynamo, torch.optim, open_clip, safetensors",
           "import numpy, zarr, av, scipy.stats, sklearn.metrics, matplotlib.pyplot, rich, typer, pytest, xdist")


def _size(url: str) -> int:
    """A wheel's size where it is a local file (pip's find-links), else 1: the split is then by count."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        if path.is_file():
            return path.stat().st_size
    return 1


def _halves(items: list[tuple[str, int]]) -> list[list[str]]:
    """The URLs split in two of about equal size (largest first, each to the lighter half)."""
    halves: list[tuple[int, list[str]]] = [(0, []), (0, [])]
    for url, size in sorted(items, key=lambda item: -item[1]):
        lighter = min(range(2), key=lambda i: halves[i][0])
        halves[lighter] = (halves[lighter][0] + size, [*halves[lighter][1], url])
    return [urls for _, urls in halves if urls]


def _wheels_to_install(args: list[str]) -> list[tuple[str, int]]:
    """What pip would install for `args`: (URL, size) of each archive; the project's own
    (a local folder) is left to the last step."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([*PIP, "install", "--quiet", "--dry-run", "--report", str(report), *args], check=True)
        plan = json.loads(report.read_text())
    out = []
    for item in plan.get("install", []):
        info = item["download_info"]
        if "archive_info" in info:  # a wheel or sdist (a folder has dir_info, a repository vcs_info)
            out.append((info["url"], _size(info["url"])))
    return out


def main(args: list[str]) -> int:
    options = [a for a in args if a in ("--quiet", "-q", "--no-compile")]
    unpacking = [subprocess.Popen([*PIP, "install", "--no-deps", *options, *half])
                 for half in _halves(_wheels_to_install(args))]
    if [p.wait() for p in unpacking].count(0) < len(unpacking):
        return 1
    warming = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for code in WARM_UP]
    status = subprocess.run([*PIP, "install", *args]).returncode
    for process in warming:  # only bytecode: a module that fails to import here fails in its test
        process.wait()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
