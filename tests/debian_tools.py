"""Programs from Debian's packages that some tests run (pdflatex for the report's LaTeX,
Chromium for its HTML page), found on PATH or installed, as the SLURM tests' cluster is.

`.ci/run` installs them before the suite; a plain `make test` as root installs what is missing
here, once, under a lock (the suite's workers each ask); without root and without the program
the test is skipped with the command that installs it: nothing can be done from inside.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess

import pytest

PDFLATEX = ("pdflatex", ("texlive-latex-base", "texlive-latex-recommended", "texlive-fonts-recommended"))
CHROMIUM = ("chromium", ("chromium",))


def program(wanted: tuple[str, tuple[str, ...]]) -> str:
    """The path of the program `wanted` names (PDFLATEX, CHROMIUM), installed first where
    missing and possible; else the test is skipped, saying how to install it."""
    name, packages = wanted
    if found := shutil.which(name):
        return found
    install = f"apt-get install --no-install-recommends {' '.join(packages)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"needs {name} and cannot install it (not root, or no apt-get): {install} (Debian)")
    with open("/tmp/clipclap-tests-apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if shutil.which(name) is None:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                                       *packages]):
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
                assert done.returncode == 0, f"{' '.join(cmd)} failed: {(done.stderr or done.stdout)[-500:]}"
    found = shutil.which(name)
    assert found, f"{install} ran, and still no {name} on PATH"
    return found
