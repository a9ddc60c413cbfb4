"""Install the development environment (`make install`): `pip install ARGS`, with the work pip
does one wheel at a time spread over two processes, and the modules every command imports
byte-compiled while pip finishes.

Usage: `.venv/bin/python .ci/install_env.py [pip install arguments]`, in the environment to fill.

Why: torch's CUDA build is 3 GB of wheels (torch, cuDNN, cuBLAS, triton, ...). pip unpacks them
one after the other on one core, which was half of the install. Here:

1. the pinned requirements among ARGS (`torch==2.14.1`: the largest wheel) are installed with
   `--no-deps` at once, while a second pip resolves the whole request (`--dry-run --report`,
   some 10 s on one core);
2. the other wheels it chose are installed by two `pip install --no-deps` processes at once,
   shared so that both end together (the first also had the pinned ones): each wheel's time is
   estimated from its archive's table of contents (bytes to write and files to create);
3. the request is installed as asked, by pip alone: it finds the wheels in place, installs what
   is left (the editable project) and checks the environment, so the result is pip's own.

The install does not byte-compile (`--no-compile`, see the Makefile); while that last pip runs,
two processes import what the commands and the tests import, so that their bytecode is written
once, on both cores, instead of by each test worker as it starts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

PIP = [sys.executable, "-m", "pip"]
#: the modules warmed up: torch's (the longer: about 10 s cold) starts with the last pip, the
#: others (which do not import torch) when that pip is done
WARM_UP_TORCH = "import torch, torch._dynamo, torch.optim, open_clip, safetensors"
WARM_UP_OTHERS = "import numpy, zarr, av, scipy.stats, sklearn.metrics, matplotlib.pyplot, rich, typer, pytest, xdist"
#: a requirement pinned to one version: `name==version`
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==[^\s,;]+$")
#: pip's time to install a wheel, measured on a 2-core machine: 4 s per GB written, 0.25 ms per
#: file, 0.5 s to start (torch: 1.1 GB in 13,000 files, 7.4 s; cuDNN: 1 GB in 31 files, 4.5 s)
SECONDS_PER_BYTE, SECONDS_PER_FILE, SECONDS_TO_START = 4e-9, 2.5e-4, 0.5


@dataclass(frozen=True)
class Wheel:
    """One archive pip chose: its URL, its project's name (normalised) and pip's time to install it."""

    url: str
    project: str
    seconds: float


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _seconds(url: str) -> float:
    """pip's time to install the archive at `url`, from its table of contents where it is a
    local zip (pip's find-links or a file:// index), else a guess for a small download."""
    parsed = urlparse(url)
    path = Path(unquote(parsed.path))
    if parsed.scheme == "file" and path.is_file():
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
            return sum(m.file_size for m in members) * SECONDS_PER_BYTE + len(members) * SECONDS_PER_FILE
        except (zipfile.BadZipFile, OSError):  # an sdist (pip builds it), an unreadable file: a guess
            pass
    return 1.0


def _planned_wheels(args: list[str]) -> list[Wheel]:
    """What pip would install for `args` in an empty environment (what step 1 puts in place
    meanwhile does not count as installed); the project's own (a local folder) is left to the
    last step."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([*PIP, "install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report), *args],
                       check=True)
        plan = json.loads(report.read_text())
    return [Wheel(item["download_info"]["url"], _normalised(item["metadata"]["name"]),
                  _seconds(item["download_info"]["url"]))
            for item in plan.get("install", [])
            if "archive_info" in item["download_info"]]  # a folder has dir_info, a repository vcs_info


def _shares(wheels: list[Wheel], head_start: list[float]) -> list[list[str]]:
    """The wheels' URLs dealt to the processes, longest first, each to the one that would be free
    first (`head_start`: the seconds each is still busy before it starts on its share)."""
    ends = list(head_start)
    shares: list[list[str]] = [[] for _ in ends]
    for wheel in sorted(wheels, key=lambda w: -w.seconds):
        first_free = min(range(len(ends)), key=ends.__getitem__)
        ends[first_free] += wheel.seconds
        shares[first_free].append(wheel.url)
    return shares


def _install_after(waiting_for: subprocess.Popen | None, install: list[str], urls: list[str],
                   statuses: list[int]) -> None:
    """Wait for `waiting_for`, then `install` the `urls` if there are any; the exit statuses go to `statuses`."""
    if waiting_for is not None:
        statuses.append(waiting_for.wait())
    if urls:
        statuses.append(subprocess.run([*install, *urls]).returncode)


def main(args: list[str]) -> int:
    options = [a for a in args if a in ("--quiet", "-q", "--no-compile")]
    install = [*PIP, "install", "--no-deps", *options]
    pins = [a for a in args if PINNED.match(a)]
    started = time.monotonic()
    early = subprocess.Popen([*install, *pins]) if pins else None
    try:
        wheels = _planned_wheels(args)
    except subprocess.CalledProcessError as e:  # pip has said why
        if early is not None:
            early.wait()
        return e.returncode
    pinned = {_normalised(PINNED.match(p)[1]) for p in pins}
    early_left = sum(w.seconds for w in wheels if w.project in pinned) - (time.monotonic() - started)
    shares = _shares([w for w in wheels if w.project not in pinned], [max(early_left, 0.0), 0.0])
    statuses: list[int] = []
    lanes = [threading.Thread(target=_install_after, args=(early if i == 0 else None, install, share, statuses))
             for i, share in enumerate(shares)]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    if any(statuses):
        return 1
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    warming = [subprocess.Popen([sys.executable, "-c", WARM_UP_TORCH], **quiet)]
    status = subprocess.run([*PIP, "install", *args]).returncode
    warming.append(subprocess.Popen([sys.executable, "-c", WARM_UP_OTHERS], **quiet))
    for process in warming:  # only bytecode: a module that fails to import here fails in its test
        process.wait()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
