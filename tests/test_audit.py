"""The audit: label errors ranked from out-of-fold probabilities, exact and near duplicates from
keys and perceptual hashes; the stage through dvc, prepare.exclude, and on real photos."""
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _benchmark import run_benchmark
from _dvc_project import declared_outputs, dvc_yaml
from conftest import (SHARED_CIFAR_JPG, SHARED_MOBILENET, make_folder_dataset, make_project,
                      needs_shared, subprocess_env)
from keras_bottleneck import audit, storage
from keras_bottleneck.testing.synthetic import reencoded


def rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_blocked_comparison_finds_exactly_the_pairs_within_the_distance(monkeypatch):
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 2**63, 300, dtype=np.uint64)
    queries = pool[rng.choice(300, 40)] ^ (np.uint64(1) << rng.integers(0, 64, 40).astype(
        np.uint64))  # one bit off a pool hash
    queries = np.concatenate([queries, rng.integers(0, 2**63, 60, dtype=np.uint64)])
    monkeypatch.setattr(audit, "_BLOCK_PAIRS", 1000)  # blocks of 3 queries
    brute = [(i, j, int(np.bitwise_count(q ^ p))) for i, q in enumerate(queries)
             for j, p in enumerate(pool) if np.bitwise_count(q ^ p) <= 5]

    assert sorted(audit.near_pairs(queries, pool, 5)) == brute
    assert len(brute) >= 40
    within = audit.near_pairs(pool, pool, 64, within=True)
    assert len(within) == 300 * 299 // 2 and all(j < i for i, j, _ in within)


def test_exact_pairs_by_key():
    keys = np.array([[1] * 32, [2] * 32, [1] * 32], np.uint8)
    assert audit.exact_pairs(keys[[1, 0]], keys) == [(0, 1), (1, 0), (1, 2)]
    assert audit.exact_pairs(keys, keys, within=True) == [(2, 0)]


def test_planted_label_errors_come_first_and_every_image_is_ranked():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 32)) * 3
    labels = np.repeat(np.arange(4), 30)
    features = (centers[labels] + rng.normal(size=(120, 32))).astype(np.float32)
    given = labels.copy()
    flipped = rng.choice(120, 8, replace=False)
    given[flipped] = (labels[flipped] + 1 + rng.integers(0, 3, 8)) % 4

    probabilities = audit.out_of_fold_probabilities(features, given, 4, 10, 0.003, 0)
    order, scores, flagged = audit.label_issues(given, probabilities)

    np.testing.assert_allclose(probabilities.sum(axis=1), 1)
    assert sorted(order[:8]) == sorted(flipped)  # out of fold: a label cannot vouch for itself
    assert (probabilities[flipped].argmax(axis=1) == labels[flipped]).all()
    assert sorted(order) == list(range(120)) and scores[order[0]] <= scores[order[-1]]
    assert set(np.flatnonzero(flagged)) >= set(flipped)


def test_a_class_too_small_for_the_folds_still_gets_out_of_fold_probabilities():
    rng = np.random.default_rng(1)
    labels = np.array([0] * 20 + [1] * 20 + [2] * 3)
    features = rng.normal(size=(43, 8)) + labels[:, None] * 2
    probabilities = audit.out_of_fold_probabilities(features, labels, 3, 10, 0.01, 0)
    assert probabilities.shape == (43, 3) and np.isfinite(probabilities).all()


def test_pooled_features_average_feature_maps_in_batches(tmp_path):
    maps = np.random.default_rng(0).random((5, 2, 3, 4)).astype(np.float16)
    np.save(tmp_path / "maps.npy", maps)
    np.testing.assert_allclose(audit.pooled_features(tmp_path / "maps.npy", batch_size=2),
                               maps.astype(np.float32).mean(axis=(1, 2)), rtol=1e-6)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A tiny project whose folder has two train images in the wrong class folder, an exact and
    a near copy of train images in test, audited through `dvc repro audit`."""
    root = tmp_path_factory.mktemp("audit")
    images = make_folder_dataset(root / "images", classes=3, train=8, test=3)
    train, test = images / "train", images / "test"
    shutil.move(train / "class_0" / "001.png", train / "class_1" / "flipped_a.png")
    shutil.move(train / "class_2" / "003.png", train / "class_0" / "flipped_b.png")
    shutil.copy(train / "class_1" / "002.png", test / "class_1" / "copy.png")
    reencoded(train / "class_2" / "005.png", test / "class_2" / "near.jpg")
    project = make_project(root / "project", subprocess_env(root), images,
                           **{"prepare.train_count": 24, "prepare.test_count": 11,
                              "extract.pool": "avg", "head.filters": 0})
    ran = project.repro("audit")
    return project, ran


@pytest.mark.slow  # `dvc repro audit` on a project copy
def test_the_stage_ranks_the_planted_flips_first_and_lists_both_copies(planted):
    project, ran = planted
    assert sorted(ran) == ["audit", "backbone", "extract", "fetch", "preprocess"]
    out = project.root / "metrics" / "audit"
    issues = rows(out / "label_issues.csv")
    assert list(issues[0]) == ["split", "file", "given", "suggested", "score"]
    assert len(issues) == 24 and {row["split"] for row in issues} == {"train"}
    assert {(row["file"], row["given"], row["suggested"]) for row in issues[:2]} == {
        ("train/class_1/flipped_a.png", "class_1", "class_0"),
        ("train/class_0/flipped_b.png", "class_0", "class_2")}
    scores = [float(row["score"]) for row in issues]
    assert scores == sorted(scores)
    pairs = rows(out / "duplicates.csv")
    assert list(pairs[0]) == ["file_a", "file_b", "similarity", "kind"]
    assert {(row["file_a"], row["file_b"], row["kind"]) for row in pairs} == {
        ("train/class_1/002.png", "test/class_1/copy.png", "exact"),
        ("train/class_2/005.png", "test/class_2/near.jpg", "near")}
    counts = project.metrics("audit")
    assert counts["train_images"] == 24 and counts["label_issues"] >= 2
    assert (counts["exact_duplicates"], counts["near_duplicates"]) == (1, 1)
    assert counts["test_duplicates"] == 2 and counts["train_duplicates"] == 0
    for picture in ("label_issues.png", "duplicates.png"):
        assert Image.open(out / picture).size[0] > 0
    assert "flipped_a.png" in (out / "report.md").read_text()
    shown = project.run(Path(sys.executable).with_name("keras-bottleneck"), "audit",
                        "--top", "2").stdout
    assert "flipped_a.png" in shown and "test/class_2/near.jpg" in shown


def changed(project):
    """The stages `dvc status` finds changed (those `dvc repro` would run first)."""
    return set(json.loads(project.dvc("status", "--json").stdout))


@pytest.mark.slow  # `dvc repro audit` on a project copy
def test_audit_reruns_on_its_params_and_features_only(planted):
    project, _ = planted
    project.commit("audited")
    assert project.repro("audit") == []
    project.set_params(**{"train_head.epochs": 2})
    assert "audit" not in changed(project)  # what DVC would run: training, not the audit
    project.set_params(**{"audit.folds": 3})
    assert project.repro("audit") == ["audit"]
    project.set_params(**{"extract.dtype": "float32"})  # other features
    assert project.repro("audit") == ["extract", "audit"]
    stages = dvc_yaml(project.root)["stages"]
    audit_outputs = set(declared_outputs(project.root, "audit"))
    assert audit_outputs == {"metrics/audit", "metrics/audit.json"}
    for name, stage in stages.items():  # nothing depends on the audit
        assert not audit_outputs & set(stage.get("deps", [])), name


@pytest.mark.slow  # `dvc repro audit` on a project copy
def test_prepare_exclude_leaves_the_listed_images_out_of_every_split(planted):
    project, _ = planted
    listed = ["train/class_1/flipped_a.png", "test/class_1/copy.png", "train/class_0/000.png",
              "no/such/image.png"]
    (project.root / "data" / "exclude.txt").write_text("# checked by hand\n"
                                                       + "\n".join(listed) + "\n")
    project.set_params(**{"prepare.train_count": 21, "prepare.validation_count": 2,
                          "prepare.test_count": 10})
    result = project.dvc("repro", "audit")
    assert "prepare.exclude lists 1 paths that are no image of the dataset, ignored: " \
        "no/such/image.png" in result.stderr
    prepared = project.root / "data" / "prepared"
    names = [name for split in ("train", "validation", "test")
             for name in storage.read_split(prepared, split).names]
    assert len(names) == 21 + 10 and not set(listed) & set(names)
    assert project.metrics("preprocess")["excluded_images"] == 3
    audited = {row["file"] for row in rows(project.root / "metrics/audit/label_issues.csv")}
    assert len(audited) == 19 and not set(listed) & audited
    assert not any(row["kind"] == "exact"
                   for row in rows(project.root / "metrics/audit/duplicates.csv"))
    # Editing the list is a change DVC sees: one `dvc repro` puts the image back.
    (project.root / "data" / "exclude.txt").write_text("train/class_1/flipped_a.png\n")
    assert "preprocess" in changed(project)
    assert "preprocess" in project.repro("audit")
    assert project.metrics("preprocess")["excluded_images"] == 1


@pytest.mark.slow  # the audit benchmark on real photos
@needs_shared(SHARED_CIFAR_JPG, SHARED_MOBILENET)
def test_on_real_photos_flipped_labels_and_copies_are_found(tmp_path):
    """The issue's targets, as benchmarks/audit.py measures them: 100 train images a class
    with 10 % of labels flipped (seeded), 20 test images made from train images (resized by
    10 %, JPEG quality 70) and 5 exact copies, MobileNet alpha 0.25 at 139 px, pooled."""
    figures, table = run_benchmark(tmp_path, "audit.py", "--sizes", "300", "--dims", "64",
                                   timeout=900)
    print(table)
    targets = figures["targets"]
    for name in ("flipped_in_top_k", "exact_copies_listed", "near_copies_listed",
                 "clean_test_images_listed"):
        assert targets[name]["met"], (name, targets[name])
    # Not met at 1,000 train images (84 of 100; every classifier tried plateaus there, see
    # docs/audit.md); 0.80 still fails if the ranking breaks.
    assert figures["labels"]["top_2k_share"] >= 0.80
