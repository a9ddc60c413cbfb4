"""A one-node SLURM cluster on this machine, for the tests of `train --launcher slurm`.

`ensure_cluster()` makes sure munged, slurmctld and slurmd run with a configuration made from
what `slurmd -C` reads of this machine (its cores and memory): two partitions, `clipclap` (the
default) and `other`, so that a partition name can be chosen. It installs Debian's `slurm-wlm`
and `munge` when they are missing and this process is root; with SLURM up it returns in a few
milliseconds. A controller it starts starts empty: jobs saved by an earlier life of the cluster
died with it. The `slurm` fixture skips only where nothing can be done (no sbatch and not root),
with the reason and the way to enable the tests. No cgroups in a container: processes are
tracked through /proc (proctrack/linuxproc) and tasks are not bound (task/none). There is no
accounting database (no slurmdbd): the launcher reads the queue with squeue, not sacct.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

PARTITION, OTHER = "clipclap", "other"
CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
STATE = Path("/var/spool/clipclap-slurm")


def _run(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _running(daemon: str) -> bool:
    return _run("pgrep", "-x", daemon).returncode == 0


def _answers() -> bool:
    """Whether the controller answers and the node takes jobs (idle, mixed or allocated); asked
    only with both daemons running (sinfo waits long for a controller that is not there)."""
    if shutil.which("sinfo") is None or not (_running("slurmctld") and _running("slurmd")):
        return False
    states = _run("sinfo", "-h", "-p", PARTITION, "-o", "%T", timeout=10).stdout.split()
    return bool(states) and all(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states)


def _install() -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=900)


def _node_line() -> str:
    """This machine as a slurm.conf node line (`slurmd -C`), reached at 127.0.0.1."""
    line = _run("slurmd", "-C").stdout.splitlines()[0]
    fields = dict(f.split("=", 1) for f in line.split())
    return (f"NodeName={fields['NodeName']} NodeAddr=127.0.0.1 CPUs={fields['CPUs']} "
            f"RealMemory={fields['RealMemory']} State=UNKNOWN")


def _config() -> str:
    node = _node_line()
    name = node.split()[0].split("=")[1]
    return "\n".join([
        "# written by clipclap's tests (tests/slurm_cluster.py): a one-node cluster",
        "ClusterName=clipclap", f"SlurmctldHost={name}(127.0.0.1)", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "ReturnToService=2", "MpiDefault=none",
        f"StateSaveLocation={STATE}/ctld", f"SlurmdSpoolDir={STATE}/d",
        f"SlurmctldPidFile={STATE}/slurmctld.pid", f"SlurmdPidFile={STATE}/slurmd.pid",
        f"SlurmctldLogFile={STATE}/slurmctld.log", f"SlurmdLogFile={STATE}/slurmd.log",
        "MinJobAge=600", "KillWait=5", "SchedulerParameters=sched_interval=1", "JobRequeue=1",
        node,
        f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        f"PartitionName={OTHER} Nodes=ALL MaxTime=INFINITE State=UP", ""])


def _start_munge() -> None:
    if _run("munge", "-n").returncode == 0:
        return
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
    for folder in (MUNGE_KEY.parent, Path("/var/lib/munge"), Path("/var/log/munge"), Path("/run/munge")):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)
    subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, capture_output=True, timeout=30)


def ensure_cluster(timeout: float = 60) -> None:
    """Make sure the one-node cluster is up (install, configure and start what is missing); one
    process at a time (the suite's xdist workers each ask)."""
    if _answers():
        return
    with open("/tmp/clipclap-slurm-cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _answers():
            _start(timeout)


def _start(timeout: float) -> None:
    if shutil.which("sbatch") is None:
        _install()
    _start_munge()
    for folder in ("ctld", "d"):
        (STATE / folder).mkdir(parents=True, exist_ok=True)
    text = _config()
    if not CONF.exists() or CONF.read_text() != text:
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(text)
    # A controller (re)started here starts empty (-c). The state it saved in an earlier life lists
    # the jobs that were running when its machine's processes were killed (a session's end, a CI
    # run before this one): recovered, they held the node's cores, allocated to processes that no
    # longer existed, for the 30 minutes slurmctld took to give up on them, and every test's task
    # waited behind them. A node daemon without its controller is restarted with it.
    if not _running("slurmctld"):
        if _running("slurmd"):
            _run("pkill", "-x", "slurmd")
            _gone("slurmd")
        subprocess.run(["slurmctld", "-c"], check=True, capture_output=True, timeout=30)
    if not _running("slurmd"):
        subprocess.run(["slurmd", "-c"], check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + timeout
    while not _answers():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the one-node SLURM cluster did not come up; see {STATE}/*.log")
        time.sleep(0.5)
    name = _node_line().split()[0].split("=")[1]
    _run("scontrol", "update", f"NodeName={name}", "State=RESUME")  # a node left down by an earlier start


def _gone(daemon: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _running(daemon) and time.monotonic() < deadline:
        time.sleep(0.2)


def describe() -> str:
    """The queue and the node as SLURM sees them, for a test that waited too long to say why."""
    queue = _run("squeue", "-h", "-r", "-o", "%i %P %T %M %R", timeout=10).stdout.strip() or "empty"
    node = _run("sinfo", "-h", "-N", "-o", "%N %T %C", timeout=10).stdout.strip()
    return f"queue: {'; '.join(queue.splitlines())}; node (CPUs alloc/idle/other/total): {node}"


def skip_reason() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    if shutil.which("sbatch") is None and os.geteuid() != 0:
        return ("no SLURM here (no sbatch) and not root to install it: `apt-get install slurm-wlm munge` "
                "(Debian), or run the tests as root, and they start a one-node cluster themselves")
    return None


@pytest.fixture(scope="session")
def slurm():
    """A one-node SLURM cluster, up; its default partition's name."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    ensure_cluster()
    return PARTITION
