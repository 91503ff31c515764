"""Sharing the features through a DVC remote on a real S3 server (SeaweedFS on 127.0.0.1): a
teammate who pulls them trains heads without ever running the backbone; a push that cannot
reach its remote fails clearly and harms nothing."""
import numpy as np
import pytest
from PIL import Image

from _dvc_project import UP_TO_DATE, contents, snapshot
from _ran_project import IMAGES, ran_project, ran_project_template  # noqa: F401 (fixtures)
from _s3 import closed_port, s3_client, s3_server  # noqa: F401 (fixture)
from conftest import COLORS, Project, make_image, ran_stages

pytestmark = pytest.mark.slow  # real dvc pipelines, clusters, servers, mounts or benchmarks

OUTPUTS = ["data", "models", "metrics"]
REMOTE_CONFIG = """\
[core]
    remote = storage
['remote "storage"']
    url = {url}
    endpointurl = {endpoint}
    access_key_id = {key}
    secret_access_key = {secret}
"""


def configure_remote(project, url, endpoint, server):
    """The README's commands: the remote in .dvc/config (committed), its keys in
    .dvc/config.local (ignored by git)."""
    project.dvc("remote", "add", "-d", "storage", url)
    project.dvc("remote", "modify", "storage", "endpointurl", endpoint)
    set_credentials(project, server)


def set_credentials(project, server):
    project.dvc("remote", "modify", "--local", "storage", "access_key_id", server.access_key_id)
    project.dvc("remote", "modify", "--local", "storage", "secret_access_key",
                server.secret_access_key)


def workspace_and_cache(project):
    return {name: snapshot(project.root / name) for name in OUTPUTS + [".dvc/cache"]}


def test_a_pulled_clone_runs_no_stage_and_retrains_only_the_head(ran_project, s3_server,
                                                                 tmp_path):
    a = ran_project
    prefix = f"team/{tmp_path.name}"
    configure_remote(a, f"s3://{s3_server.bucket}/{prefix}", s3_server.endpoint, s3_server)
    assert s3_server.secret_access_key not in (a.root / ".dvc/config").read_text()
    assert s3_server.secret_access_key in (a.root / ".dvc/config.local").read_text()
    assert a.run("git", "check-ignore", "-q", ".dvc/config.local", check=False).returncode == 0
    a.commit("share the features on S3")
    assert a.run("git", "status", "--porcelain").stdout == ""
    a.dvc("push", "--run-cache")
    stored = [item["Key"] for item in s3_client(s3_server.endpoint).list_objects_v2(
        Bucket=s3_server.bucket, Prefix=prefix + "/")["Contents"]]
    assert any(key.startswith(f"{prefix}/files/md5/") for key in stored)
    assert any(key.startswith(f"{prefix}/runs/") for key in stored)  # the run-cache

    # A teammate: a fresh clone in another folder, with its own (empty) DVC cache. The raw
    # images are tracked with `dvc add`, so they come through the remote like the features.
    b = Project(tmp_path / "teammate" / "project", a.env)
    b.root.parent.mkdir()
    a.run("git", "clone", "-q", a.root, b.root)
    assert not (b.root / ".dvc/config.local").exists() and not (b.root / ".dvc/cache").exists()
    assert not (b.root / "data/features").exists()
    set_credentials(b, s3_server)
    b.dvc("pull")
    features = snapshot(b.root / "data/features")
    assert contents(features) == contents(snapshot(a.root / "data/features"))

    repro = b.dvc("repro")
    assert ran_stages(repro.stdout) == [], repro.stdout
    assert "Stage 'extract' didn't change, skipping" in repro.stdout
    assert UP_TO_DATE in repro.stdout
    assert snapshot(b.root / "data/features") == features  # not even rewritten: same mtimes

    b.set_params(**{"train_head.epochs": 2})
    assert b.repro() == ["train_head", "finetune", "export", "evaluate"]
    assert snapshot(b.root / "data/features") == features
    assert b.metrics("train_head")["epochs"] == 2

    # B adds two photos: the backbone runs on those two only, the others' features come from
    # the pulled ones.
    for i, color in enumerate(COLORS[:2]):
        Image.fromarray(make_image(np.random.default_rng(50 + i), color)).save(
            b.root / IMAGES / "train" / f"class_{i}" / f"new_{i}.png")
    b.dvc("add", IMAGES)
    before = b.params()["prepare"]["train_count"]
    b.set_params(**{"prepare.train_count": before + 2})
    assert b.repro("extract") == ["fetch", "preprocess", "extract"]
    extracted = b.metrics("extract")
    assert extracted["backbone_images"] == 2
    assert extracted["reused_images"] == extracted["images"] - 2 >= before
    # fetch and preprocess found the pulled data/raw and data/prepared just as well.
    assert b.metrics("fetch")["checked_images"] == 2
    assert b.metrics("preprocess")["decoded_images"] == 2


@pytest.mark.parametrize("problem", ["unreachable endpoint", "missing bucket"])
def test_a_failed_push_says_why_and_leaves_cache_and_workspace_intact(ran_project, s3_server,
                                                                      problem):
    if problem == "unreachable endpoint":
        endpoint = f"http://127.0.0.1:{closed_port()}"
        url, expected = f"s3://{s3_server.bucket}/team", "Could not connect to the endpoint URL"
    else:
        endpoint = s3_server.endpoint
        url, expected = "s3://no-such-bucket/team", "The specified bucket does not exist"
    # What configure_remote's commands write, in one go: each `dvc` call takes seconds.
    (ran_project.root / ".dvc/config.local").write_text(REMOTE_CONFIG.format(
        url=url, endpoint=endpoint, key=s3_server.access_key_id,
        secret=s3_server.secret_access_key))
    before = workspace_and_cache(ran_project)

    # Without --run-cache: to an unreachable remote, each run-cache entry fails only after
    # seconds of retries.
    push = ran_project.dvc("push", check=False)
    message = push.stdout + push.stderr
    assert push.returncode != 0, message
    assert expected in message and "ERROR" in message
    if problem == "unreachable endpoint":
        assert endpoint in message

    assert workspace_and_cache(ran_project) == before
    assert UP_TO_DATE in ran_project.dvc("status").stdout
