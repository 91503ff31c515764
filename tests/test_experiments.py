"""A head-parameter sweep of queued experiments, run by two queue workers at once, reuses the
features: each experiment runs in its own temporary clone, which has only what git and DVC
track, and trains the head only."""
import json
import re
import subprocess
import sys
import time

import pytest

from _ran_project import ran_project, ran_project_template  # noqa: F401 (fixtures)
from conftest import ran_stages

pytestmark = pytest.mark.slow  # real dvc pipelines, clusters, servers, mounts or benchmarks

EPOCHS = [2, 3]  # train_head.epochs of the sweep; the committed run used 1


def queued_names(dvc_output):
    return re.findall(r"Queued experiment '([^']+)' for future execution", dvc_output)


def experiments(exp_show_json):
    """{name: {"params", "metrics", "deps", ...}} of the experiments in `dvc exp show --json`,
    and the baseline commit's own data."""
    commits = [entry for entry in json.loads(exp_show_json) if entry["rev"] != "workspace"]
    assert len(commits) == 1, exp_show_json
    found = {run["name"]: run["data"] for experiment in commits[0]["experiments"] or []
             for run in experiment["revs"] if run["data"]}
    return found, commits[0]["data"]


def wait_for_queue(project, timeout=900):
    """Every `dvc queue status` printed until no experiment is queued or running."""
    statuses, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses.append(project.dvc("queue", "status").stdout)
        if not re.search(r"\b(Queued|Running)\b", statuses[-1]):
            return statuses
        time.sleep(1)
    pytest.fail(f"the queue did not finish in {timeout} s:\n{statuses[-1]}")


def metrics_of(data, stage):
    return data["metrics"][f"metrics/{stage}.json"]["data"]


def test_a_queued_head_sweep_never_runs_extract(ran_project):
    project = ran_project
    sweep = ",".join(map(str, EPOCHS))
    names = queued_names(project.dvc("exp", "run", "--queue", "-S",
                                     f"train_head.epochs={sweep}").stdout)
    assert len(names) == len(EPOCHS)
    # Two workers, in the background; they inherit its output, so nothing may wait on it.
    subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", "2"], cwd=project.root,
                   env=project.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    statuses = wait_for_queue(project)
    logs = {name: project.dvc("queue", "logs", name, check=False).stdout for name in names}
    found, baseline = experiments(project.dvc("exp", "show", "--json").stdout)
    if set(found) != set(names):
        pytest.fail(f"experiments failed.\nqueue status:\n{statuses[-1]}\n" +
                    "".join(f"queue logs {name}:\n{log}\n" for name, log in logs.items()))
    # Both ran at once: one status listed both experiments as running.
    assert any(status.count("Running") == 2 for status in statuses), statuses

    for name, log in logs.items():  # the queue keeps each experiment's `dvc repro` output
        assert ran_stages(log) == ["train_head", "finetune", "export", "evaluate"], log
        assert "Stage 'extract' didn't change, skipping" in log, log

    epochs = {}
    for name in names:
        data = found[name]
        epochs[name] = data["params"]["params.yaml"]["data"]["train_head"]["epochs"]
        assert metrics_of(data, "train_head")["epochs"] == epochs[name]
        assert data["deps"]["data/features"] == baseline["deps"]["data/features"]
        assert metrics_of(data, "train_frozen") == metrics_of(baseline, "train_frozen")
    assert sorted(epochs.values()) == EPOCHS
    losses = {name: metrics_of(found[name], "train_head")["test_loss"] for name in names}
    assert len(set(losses.values())) == len(names), losses
