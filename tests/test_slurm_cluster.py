"""A study through a real Slurm: a one-node cluster (munged, slurmctld, slurmd; this machine's CPUs)
runs the jobs `multvae slurm` writes: the prepare job, the train array, the finish job after it.
One train task is sent the signal Slurm sends before a time limit while it trains; it must requeue
itself and resume from its checkpoint. Everything the study publishes must equal, byte for byte,
what `dvc repro` gives in a clone on one machine.

Needs the Debian packages slurm-wlm and munge and root (the daemons run as root, no systemd); skipped
without them unless MULTVAE_REQUIRE_SLURM=1 (.ci/run installs them and sets it).
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import shrink, two_rows

pytestmark = pytest.mark.slow

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel")
WAIT_S = 600


def _sbin(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A running one-node Slurm cluster; yields the environment its commands need (SLURM_CONF)."""
    missing = [d for d in DAEMONS if not _sbin(d)]
    why = (f"needs {', '.join(missing)} (apt-get install slurm-wlm munge)" if missing
           else "needs root to run the Slurm daemons" if os.geteuid() != 0 else None)
    if why:
        if os.environ.get("MULTVAE_REQUIRE_SLURM") == "1":
            pytest.fail(f"MULTVAE_REQUIRE_SLURM=1 but the Slurm test {why}")
        pytest.skip(f"the Slurm test {why}")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    sock = root / "munge.sock"
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=multvae-test", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge", f"AuthInfo=socket={sock}", "CredType=cred/munge",
        f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}", f"SlurmdLogFile={root / 'slurmd.log'}",
        # no cgroups and no systemd here: track processes by their parent, bind no CPUs
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "MpiDefault=none", "ReturnToService=2",
        "SchedulerType=sched/backfill", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
        f"NodeName={host} CPUs={os.cpu_count()} RealMemory=4000 State=UNKNOWN",
        "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started = subprocess.run([_sbin("munged") or "munged", "--force", f"--socket={sock}", f"--key-file={key}",
                              f"--pid-file={root / 'munged.pid'}", f"--log-file={root / 'munged.log'}",
                              f"--seed-file={root / 'munged.seed'}"], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    try:
        for daemon in (["slurmctld", "-c"], ["slurmd"]):
            done = subprocess.run([_sbin(daemon[0]) or daemon[0], *daemon[1:]], env=env, capture_output=True,
                                  text=True)
            assert done.returncode == 0, f"{daemon[0]}: {done.stderr}"
        _until(lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                                text=True).stdout, 60, "the node to come up", root)
        yield {"SLURM_CONF": str(conf), "LOGS": str(root)}
    finally:
        subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            pid = root / pid_file
            if pid.is_file():
                try:
                    os.kill(int(pid.read_text().split()[0]), 15)
                except (ProcessLookupError, ValueError):
                    pass


def _until(ready, timeout: float, what: str, logs: Path | None = None) -> None:
    end = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > end:
            tails = "".join(f"\n--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
                            for p in sorted((logs or Path("/nonexistent")).glob("*.log")))
            pytest.fail(f"waited {timeout:.0f} s for {what}{tails}")
        time.sleep(0.2)


def _job(job: str, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], env=env, capture_output=True,
                         text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _edit(params: dict) -> None:
    # Enough data and epochs that a task is still training when the test signals it.
    shrink(params, users=1500, items=400, tastes=4, heldout_users=60, epochs=50)
    params["runtime"].update(checkpoint_seconds=0)  # a checkpoint after every epoch
    two_rows(params)


PUBLISHED = ("results", "metrics", "plots", "dvc.lock")


@pytest.fixture(scope="module")
def through_slurm(slurm, tmp_path_factory, new_project, run):
    """The study run by Slurm, with train task 0 signalled once mid-run; and the same study by
    `dvc repro` in a plain clone."""
    tmp = tmp_path_factory.mktemp("study")
    origin = new_project(tmp / "origin", _edit)
    run(["git", "add", "-A"], origin)
    run(["git", "commit", "-qm", "pipeline"], origin)
    alone = tmp / "alone"
    run(["git", "clone", "-q", str(origin), str(alone)], tmp)

    checkpoints = tmp / "checkpoints"
    out = run(["multvae", "slurm", "--remote", str(tmp / "remote"), "--cpus", "1", "--mem", "1G",
               "--time", "00:20:00", "--checkpoints", str(checkpoints)], origin)
    assert "2 train tasks" in out, out
    env = {**os.environ, **slurm}
    submitted = subprocess.run([str(origin / "slurm" / "submit.sh")], env=env, capture_output=True, text=True)
    assert submitted.returncode == 0, submitted.stderr
    ids = dict(re.findall(r"(prepare|train|finish) (\d+)", submitted.stdout))

    # The checkpoint of task 0's run (original, fold 0, seed 1) appears after its first epoch.
    first = checkpoints / "original" / "fold-0" / "seed-1.pt"
    _until(first.is_file, WAIT_S, f"a checkpoint at {first}", Path(slurm["LOGS"]))
    signalled = subprocess.run(["scancel", "--batch", "--signal=USR1", f"{ids['train']}_0"], env=env,
                               capture_output=True, text=True)
    assert signalled.returncode == 0, signalled.stderr
    # Slurm holds a requeued job back for two minutes; once the killed attempt is gone and the task
    # waits again, let it start now.
    _until(lambda: (lambda job: job.get("Restarts") == "1" and job.get("JobState") == "PENDING")(
        _job(f"{ids['train']}_0", env)), 60, "the task to requeue itself", Path(slurm["LOGS"]))
    time.sleep(5)  # slurmd refuses, for a moment, to launch a job it has just killed
    subprocess.run(["scontrol", "update", f"JobId={ids['train']}_0", "StartTime=now"], env=env, check=True)

    def finished() -> bool:
        state = _job(ids["finish"], env)
        assert state.get("Reason") != "DependencyNeverSatisfied", "a train task failed: " + "".join(
            p.read_text() for p in (origin / "slurm").glob("slurm-train-*"))
        return state.get("JobState") in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}

    _until(finished, WAIT_S, "the finish job", Path(slurm["LOGS"]))
    logs = {p.name: p.read_text() for p in (origin / "slurm").glob("slurm-*.out")}
    assert _job(ids["finish"], env)["JobState"] == "COMPLETED", logs
    run(["dvc", "repro"], alone)
    return {"origin": origin, "alone": alone, "ids": ids, "env": env, "logs": logs}


def _files(root: Path) -> dict[str, Path]:
    found = {}
    for name in PUBLISHED:
        path = root / name
        for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            found[str(f.relative_to(root))] = f
    return found


def test_the_study_through_slurm_equals_dvc_repro_on_one_machine(through_slurm):
    slurm_files, alone_files = _files(through_slurm["origin"]), _files(through_slurm["alone"])
    assert sorted(slurm_files) == sorted(alone_files)
    assert any(n.startswith("results/default/table") for n in slurm_files)
    differ = [n for n in slurm_files if not filecmp.cmp(slurm_files[n], alone_files[n], shallow=False)]
    assert not differ, differ
    # Only the prepare job read the data's source; the others pulled what it pushed.
    for name, log in through_slurm["logs"].items():
        if not name.startswith("slurm-prepare"):
            assert "already in data/raw" in log and "-> data/raw" not in log, (name, log[:2000])


def test_a_signalled_task_requeues_itself_and_resumes_from_its_checkpoint(through_slurm):
    task = f"{through_slurm['ids']['train']}_0"
    state = _job(task, through_slurm["env"])
    assert state["Restarts"] == "1" and state["JobState"] == "COMPLETED", state
    log = through_slurm["logs"][f"slurm-train-{through_slurm['ids']['train']}_0.out"]
    resumed = re.search(r"resuming from \S+ after epoch (\d+)", log)
    assert resumed and 1 <= int(resumed.group(1)) < 50, log[-3000:]
    # the other task ran once, from the start
    other = _job(f"{through_slurm['ids']['train']}_1", through_slurm["env"])
    assert other["Restarts"] == "0" and other["JobState"] == "COMPLETED", other
