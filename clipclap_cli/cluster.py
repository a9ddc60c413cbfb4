"""What every command that hands its work to SLURM shares (`train --launcher slurm`,
`extract --launcher slurm`): the settings each task asks for, the checks made before anything
is written (sbatch on PATH, the partition), one job array submitted through submitit (the
`clipclap[cluster]` extra) with nothing left behind when the scheduler rejects it, the queue
read with squeue (a cluster without an accounting database has no sacct), and why a task that
left the queue failed, read from the result submitit wrote for it."""

from __future__ import annotations

import contextlib
import io
import pickle
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from clipclap_cli.errors import ClipclapError, ConfigError
from clipclap_cli.extras import need

#: States in which a task is still the queue's: the launcher waits on it and does not resubmit it
LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
        "SUSPENDED", "STAGE_OUT", "SIGNALING"}
JOBS = "jobs.json"
_SETTINGS = {"partition": str, "time": int, "gpus": int, "cpus": int, "mem_gb": int, "array_parallelism": int,
             "sbatch": list}


@dataclass(frozen=True)
class SlurmSettings:
    """What each task asks SLURM for; None: the cluster's default. `time` in minutes, `sbatch`:
    extra "--key=value" arguments (or "--flag")."""

    partition: str | None = None
    time: int | None = None
    gpus: int | None = None
    cpus: int | None = None
    mem_gb: int | None = None
    array_parallelism: int | None = None
    sbatch: tuple[str, ...] = ()

    def parameters(self) -> dict:
        """submitit's `update_parameters` arguments (with no `time`, the partition's: submitit's
        own default of 5 minutes would cut a task short)."""
        time = self.time if self.time is not None else partition_minutes(self.partition)
        given = {"slurm_partition": self.partition, "timeout_min": time, "gpus_per_node": self.gpus,
                 "cpus_per_task": self.cpus, "mem_gb": self.mem_gb, "slurm_array_parallelism": self.array_parallelism}
        extra = {}
        for arg in self.sbatch:
            key, _, value = arg.removeprefix("--").partition("=")
            extra[key] = value if value else True
        given["slurm_signal_delay_s"] = min(90, max(10, time * 15))  # submitit's requeue signal, before the limit
        return {k: v for k, v in given.items() if v is not None} | (
            {"slurm_additional_parameters": extra} if extra else {})


def settings_from(table: object, where: str, **given) -> SlurmSettings:
    """A [slurm] table (read from `where`), each key the command line `given` (not None)
    overriding; a key or value of the wrong kind is a ConfigError naming it."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    for key, value in table.items():
        kind = _SETTINGS.get(key)
        if kind is None:
            raise ConfigError(f"{where} {key}: unknown; valid: {', '.join(_SETTINGS)}")
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 1) or (
                kind is list and not all(isinstance(a, str) and a.startswith("--") for a in value)):
            wanted = {str: "a name", int: "a whole number of 1 or more", list: 'a list of "--key=value" strings'}
            raise ConfigError(f"{where} {key}: expected {wanted[kind]}, got {value!r}")
    merged = table | {k: v for k, v in given.items() if v is not None and v != ()}
    return SlurmSettings(**{k: tuple(v) if k == "sbatch" else v for k, v in merged.items()})


def partition_minutes(partition: str | None) -> int:
    """A partition's time limit for a job that gives none (its DefaultTime, else its MaxTime, else
    a year), in minutes; None: the default partition."""
    for line in slurm("sinfo", "-h", "-o", "%P|%L|%l").splitlines():
        name, default, most = line.strip().split("|")
        if (name.rstrip("*") == partition) if partition else name.endswith("*"):
            for value in (default, most):
                if minutes := _minutes(value):
                    return minutes
    return 365 * 24 * 60


def _minutes(text: str) -> int | None:
    """SLURM's time (MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) in whole minutes, at least 1; None
    for anything else (infinite, n/a)."""
    days, _, clock = text.rpartition("-")
    try:
        parts, d = [int(p) for p in clock.split(":")], int(days or 0)
    except ValueError:
        return None
    if days:
        h, m, s = [*parts, 0, 0][:3]
    else:
        h, m, s = {1: [0, *parts, 0], 2: [0, *parts]}.get(len(parts), parts)[:3]
    return max(1, (d * 24 + h) * 60 + m + (s > 0))


def check_slurm(settings: SlurmSettings, command: str) -> None:
    """The `clipclap[cluster]` extra is installed, SLURM answers here and knows the partition
    asked for: else one line, before any write. `command`: "train", "extract"."""
    need("submitit", "cluster", f"{command} --launcher slurm")
    if shutil.which("sbatch") is None:
        raise ClipclapError(f"SLURM is not reachable from here: no sbatch on PATH ({command} on a cluster's login "
                            "node, or with --launcher local)")
    if settings.partition is not None:
        known = slurm("sinfo", "-h", "-o", "%R").split()
        if settings.partition not in known:
            raise ClipclapError(f"SLURM has no partition {settings.partition!r}; sinfo lists: "
                                f"{', '.join(sorted(set(known))) or 'none'}")


def slurm(*cmd: str) -> str:
    """A SLURM command's output; its failure is one line with its message."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ClipclapError(f"{cmd[0]} failed: {e}") from None
    if done.returncode != 0:
        raise ClipclapError(f"{cmd[0]} failed: {(done.stderr or done.stdout).strip() or done.returncode}")
    return done.stdout


def submit_array(folder: Path, name: str, settings: SlurmSettings, tasks: list, command: str) -> list[dict]:
    """Submit `tasks` (submitit callables) as one job array named `name`, submitit's files under
    `folder`; each task's record (its id JOB_TASK, log and result files). A rejected job leaves
    nothing: what this call created under `folder` (and `folder` itself, if it made it) goes."""
    submitit = need("submitit", "cluster", f"{command} --launcher slurm")
    created = [p for p in (*reversed(folder.parents), folder) if not p.exists()]
    before = set(folder.iterdir()) if folder.exists() else set()
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    executor.update_parameters(name=name, **settings.parameters())
    try:  # submitit prints sbatch's refusal to stderr too: it comes in the one line below instead
        with contextlib.redirect_stderr(io.StringIO()):
            submitted = executor.submit_array(tasks)
    except Exception as e:  # sbatch's refusal comes as whatever submitit raises
        for path in set(folder.iterdir()) - before if folder.exists() else ():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        for path in reversed(created):
            shutil.rmtree(path, ignore_errors=True)
        raise ClipclapError(f"SLURM refused the job: {last_line(e)}") from None
    return [{"task": job.job_id, "log": str(job.paths.stderr), "result": str(job.paths.result_pickle)}
            for job in submitted]


def queue() -> dict[str, str]:
    """This user's tasks in SLURM's queue: task id (JOB_TASK) -> state."""
    lines = slurm("squeue", "-h", "-r", "--me", "-o", "%i|%T").splitlines()
    return dict(line.strip().split("|", 1) for line in lines if "|" in line)


def task_error(task: dict) -> str:
    """Why a task that left the queue did not finish its work: its error, from the result
    submitit wrote, or what its absence says."""
    with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError):
        outcome, value = pickle.loads(Path(task["result"]).read_bytes())[:2]
        if outcome == "error":
            return last_line(value).removeprefix("clipclap_cli.errors.").split(": ", 1)[-1] if _ours(value) \
                else last_line(value)
    return "its task ended before its work finished (cancelled, killed or out of time)"


def succeeded(task: dict) -> bool:
    """Whether a task that left the queue returned: submitit wrote a result that is no error."""
    with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError):
        return pickle.loads(Path(task["result"]).read_bytes())[0] == "success"
    return False


def _ours(traceback: str) -> bool:
    """Whether a task's traceback ends in one of clipclap's errors (its message says it all)."""
    return last_line(traceback).startswith("clipclap_cli.errors.")


def last_line(error: object) -> str:
    """The line that says what went wrong: the last of a traceback or of a command's output."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
