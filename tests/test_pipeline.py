"""The whole pipeline through the real `dvc` CLI on a tiny folder dataset: what runs, what does
not, and what `dvc metrics`/`params`/`plots` report.

Every `dvc repro` costs tens of seconds (each stage imports TensorFlow), so the tests share one
project (module scope). Each fixture below makes one change to the up-to-date project and
records what happened, so that the tests pass in any order, or alone.
"""
import ast
import json
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from _dvc_project import (UP_TO_DATE, chunk_files, declared_outputs, dvc_yaml, module_project,
                          snapshot, split_shape, stage_names, stored_rows, varies)
from conftest import REPO_ROOT, live_history, ran_stages
from keras_bottleneck import storage

pytestmark = pytest.mark.slow  # real dvc pipelines, clusters, servers, mounts or benchmarks

UPSTREAM_OUTPUTS = ("data/raw", "data/prepared", "models/backbone", "data/features")

# Package modules that cannot change what a stage writes (error messages, the temp-then-rename
# of outputs, validation of params whose values DVC tracks itself, the peak-memory reading), so
# no stage depends on them.
NOT_OUTPUT_AFFECTING = {"__init__", "errors", "atomic", "params", "resources"}


def without_audit(ran):
    """The stages that ran but the audit, which runs after extract wherever DVC puts it."""
    if "extract" in ran:
        assert ran.index("audit") > ran.index("extract"), ran
    return [stage for stage in ran if stage != "audit"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny project after its first `dvc repro`."""
    project, images = module_project(tmp_path_factory, "pipeline")
    first = project.dvc("repro")
    return SimpleNamespace(project=project, images=images, first_ran=ran_stages(first.stdout))


def repro_after(project, change):
    """Apply `change` to the (up-to-date) project, `dvc repro`; what ran and `dvc status` after.
    Each test of a change asserts that status is clean after it, so the next starts clean."""
    change()
    ran = ran_stages(project.dvc("repro").stdout)
    return ran, project.dvc("status").stdout


def test_first_repro_writes_every_declared_output_and_status_is_clean(tiny):
    root = tiny.project.root
    assert set(tiny.first_ran) == stage_names(root)
    outputs = declared_outputs(root)
    assert "data/features" in outputs and "metrics/train_frozen.json" in outputs  # sanity
    for output in outputs:
        path = root / output
        assert path.exists(), f"{output} is declared in dvc.yaml but was not written"
        if path.is_dir():
            assert any(path.iterdir()), f"{output} is empty"
        else:
            assert path.stat().st_size > 0, f"{output} is empty"
    # Real features, so that the later "rewritten or not" checks mean something.
    assert varies(stored_rows(root / "data/features", "train"))
    assert UP_TO_DATE in tiny.project.dvc("status").stdout


def test_second_repro_runs_no_stage(tiny):
    out = tiny.project.dvc("repro").stdout
    assert ran_stages(out) == []
    for stage in stage_names(tiny.project.root):  # skipped as unchanged, not restored from cache
        assert f"Stage '{stage}' didn't change, skipping" in out


@pytest.fixture(scope="module")
def head_change(tiny):
    """train_head.epochs + 1 on a committed baseline: files and metrics before and after, and
    the diffs against the baseline."""
    project, root = tiny.project, tiny.project.root
    project.commit("baseline")
    epochs = project.params()["train_head"]["epochs"]

    def state():
        return SimpleNamespace(
            data={name: snapshot(root / name) for name in UPSTREAM_OUTPUTS},
            models=snapshot(root / "models"),
            metrics={stage: project.metrics(stage) for stage in ("train_head", "train_frozen")})
    before = state()
    ran, status = repro_after(project, lambda: project.set_params(**{
        "train_head.epochs": epochs + 1}))
    return SimpleNamespace(
        epochs=epochs, ran=ran, status=status, before=before, after=state(),
        metrics_diff=json.loads(project.dvc("metrics", "diff", "--json").stdout),
        metrics_diff_all=json.loads(project.dvc("metrics", "diff", "--all", "--json").stdout),
        params_diff=json.loads(project.dvc("params", "diff", "--json").stdout))


def test_head_only_param_reruns_train_head_finetune_export_and_evaluate(head_change):
    before, after = head_change.before, head_change.after
    assert head_change.ran == ["train_head", "finetune", "export", "evaluate"]
    for name in UPSTREAM_OUTPUTS:  # extract (nor anything before it) did not run: untouched
        assert after.data[name] == before.data[name], f"{name} was rewritten"
    assert before.metrics["train_head"]["epochs"] == head_change.epochs
    assert after.metrics["train_head"]["epochs"] == head_change.epochs + 1
    assert after.metrics["train_frozen"] == before.metrics["train_frozen"]
    assert after.models["frozen.keras"] == before.models["frozen.keras"]
    assert after.models["head.keras"] != before.models["head.keras"]
    assert after.models["classifier.keras"] != before.models["classifier.keras"]
    assert UP_TO_DATE in head_change.status


def test_metrics_and_params_diff_list_the_change(head_change):
    epochs = head_change.epochs
    assert head_change.params_diff == {
        "params.yaml": {"train_head.epochs": {"old": epochs, "new": epochs + 1, "diff": 1}}}
    # Without --all only changed metrics are listed: train_frozen and extract did not change.
    assert set(head_change.metrics_diff) <= {"metrics/train_head.json", "metrics/finetune.json",
                                             "metrics/evaluate.json",
                                             "dvclive/train_head/metrics.json",
                                             "dvclive/finetune/metrics.json"}
    changed = head_change.metrics_diff["metrics/train_head.json"]
    assert changed["epochs"] == {"old": epochs, "new": epochs + 1, "diff": 1}
    assert all(entry["old"] != entry["new"] for entry in changed.values())
    every = head_change.metrics_diff_all
    assert set(every) == {"metrics/train_head.json", "metrics/train_frozen.json",
                          "metrics/finetune.json", "metrics/fetch.json",
                          "metrics/preprocess.json", "metrics/backbone.json",
                          "metrics/extract.json", "metrics/evaluate.json", "metrics/audit.json",
                          *(f"dvclive/{stage}/metrics.json"
                            for stage in ("train_head", "train_frozen", "finetune"))}
    # Per-class metrics of the three methods, flattened by DVC.
    evaluated = every["metrics/evaluate.json"]
    for method in ("train_head", "train_frozen", "finetune"):
        assert f"{method}.macro_f1" in evaluated
        assert {f"{method}.per_class.class_{c}.{key}" for c in range(3)
                for key in ("precision", "recall", "f1", "support")} <= set(evaluated)
    head_keys = set(every["metrics/train_head.json"])
    assert {"epochs", "test_accuracy", "test_loss"} <= head_keys
    assert head_keys == set(head_change.after.metrics["train_head"])


@pytest.fixture(scope="module")
def head_reverted(tiny, head_change):
    """train_head.epochs back to its value before head_change: a run DVC has seen before."""
    project = tiny.project
    project.set_params(**{"train_head.epochs": head_change.epochs})
    out = project.dvc("repro").stdout
    return SimpleNamespace(out=out, metrics=project.metrics("train_head"),
                           model=(project.root / "models/head.keras").read_bytes(),
                           status=project.dvc("status").stdout)


def test_reverted_param_restores_the_earlier_run_from_the_run_cache(head_reverted, head_change):
    assert ran_stages(head_reverted.out) == []
    assert "Stage 'train_head' is cached - skipping run" in head_reverted.out
    # What is restored is that earlier run's outputs, not the latest ones.
    assert head_reverted.metrics == head_change.before.metrics["train_head"]
    assert head_reverted.model == head_change.before.models["head.keras"][2]
    assert UP_TO_DATE in head_reverted.status


@pytest.fixture(scope="module")
def augment_change(tiny):
    """extract.augment_copies from 0 to 2."""
    project, root = tiny.project, tiny.project.root
    features = root / "data/features"
    before = chunk_files(features)
    models = snapshot(root / "models")
    frozen = project.metrics("train_frozen")
    ran, status = repro_after(project, lambda: project.set_params(**{
        "extract.augment_copies": 2}))
    return SimpleNamespace(ran=ran, status=status, before=before, models=models, frozen=frozen,
                           after=chunk_files(features), extract=project.metrics("extract"),
                           project=project)


def test_augment_copies_reruns_extract_and_what_depends_on_it(augment_change):
    change = augment_change
    assert without_audit(change.ran) == ["extract", "train_head", "finetune", "export",
                                         "evaluate"]
    features = change.project.root / "data/features"
    train = split_shape(features, "train")[0]
    # Only the views went through the backbone: the originals, test split included, were
    # reused as the very same files, and no test view was made.
    assert change.extract["backbone_images"] == 2 * train
    assert set(change.after) > set(change.before)
    for name, data in change.before.items():
        assert change.after[name] == data, f"{name} changed"
    assert split_shape(features, "train_views")[0] == 2 * train
    assert not storage.has_split(features, "test_views")
    assert change.project.metrics("train_frozen") == change.frozen
    assert UP_TO_DATE in change.status


@pytest.fixture(scope="module")
def finetune_change(tiny):
    """finetune.learning_rate ten times higher."""
    project, root = tiny.project, tiny.project.root
    models, head = snapshot(root / "models"), project.metrics("train_head")
    rate = project.params()["finetune"]["learning_rate"]
    ran, status = repro_after(project, lambda: project.set_params(**{
        "finetune.learning_rate": rate * 10}))
    return SimpleNamespace(ran=ran, status=status, before=models, after=snapshot(root / "models"),
                           head=head, head_after=project.metrics("train_head"))


def test_finetune_param_reruns_finetune_and_what_depends_on_it_alone(finetune_change):
    change = finetune_change
    assert change.ran == ["finetune", "export", "evaluate"]
    assert change.head_after == change.head
    for name in ("head.keras", "frozen.keras"):
        assert change.after[name] == change.before[name]
    assert change.after["finetuned.keras"] != change.before["finetuned.keras"]
    assert UP_TO_DATE in change.status


@pytest.fixture(scope="module")
def mirror_change(tiny):
    """predict.mirror from false to true."""
    project, root = tiny.project, tiny.project.root
    features = root / "data/features"
    before = chunk_files(features)
    ran, status = repro_after(project, lambda: project.set_params(**{"predict.mirror": True}))
    classifier = keras.models.load_model(root / "models/classifier.keras")
    images = stored_rows(root / "data/prepared", "test")
    return SimpleNamespace(
        ran=ran, status=status, before=before, project=project, after=chunk_files(features),
        test=stored_rows(features, "test"), mirrored=stored_rows(features, "test_mirrored"),
        metrics={stage: project.metrics(stage)
                 for stage in ("extract", "train_head", "train_frozen", "finetune")},
        evaluate=json.loads((root / "metrics/evaluate.json").read_text()),
        report=(root / "metrics/report.md").read_text(),
        probabilities=classifier.predict(images, verbose=0),
        of_mirrored=classifier.predict(images[:, :, ::-1], verbose=0))


def test_mirror_reruns_extract_on_the_mirror_images_alone_and_everything_that_scores(
        mirror_change):
    change = mirror_change
    # train_frozen does not depend on extract: DVC may run it anywhere before evaluate.
    assert [stage for stage in without_audit(change.ran) if stage != "train_frozen"] == [
        "extract", "train_head", "finetune", "export", "evaluate"]
    assert change.ran.index("train_frozen") < change.ran.index("evaluate")
    test_count = len(change.test)
    # The features already stored are reused as they are; the backbone ran on the test split's
    # mirror images only (no validation split here), never on train images.
    assert change.metrics["extract"]["backbone_images"] == test_count
    assert set(change.after) > set(change.before)
    for name, data in change.before.items():
        assert change.after[name] == data, f"{name} changed"
    assert len(change.mirrored) == test_count
    assert not np.array_equal(change.mirrored, change.test)
    assert UP_TO_DATE in change.status


def test_mirror_scores_every_method_and_exports_a_mirror_symmetric_classifier(mirror_change):
    change = mirror_change
    for stage in ("train_head", "train_frozen", "finetune"):
        assert change.metrics[stage]["mirrored"] is True
        # evaluate scores the saved models the way training scored them
        assert change.evaluate[stage]["accuracy"] == pytest.approx(
            change.metrics[stage]["test_accuracy"], abs=1e-6)
    assert "mirror image (predict.mirror)" in change.report
    # An image and its mirror image get the same probabilities from the exported classifier.
    np.testing.assert_allclose(change.probabilities, change.of_mirrored, rtol=1e-4, atol=1e-6)
    # ...and the probabilities depend on the image (constant ones would be trivially symmetric).
    assert not np.allclose(change.probabilities, change.probabilities[:1])


@pytest.fixture(scope="module")
def engine_change(tiny):
    """extract.engine from openvino (the default) to tensorflow, then back with
    --no-run-cache, so that extract runs again instead of being restored."""
    project, root = tiny.project, tiny.project.root
    features = root / "data/features"
    before = SimpleNamespace(extract=project.metrics("extract"), features=chunk_files(features))
    to_tensorflow, status = repro_after(project, lambda: project.set_params(**{
        "extract.engine": "tensorflow"}))
    on_tensorflow = SimpleNamespace(extract=project.metrics("extract"), status=status)
    project.set_params(**{"extract.engine": "openvino"})
    back = ran_stages(project.dvc("repro", "--no-run-cache").stdout)
    return SimpleNamespace(before=before, to_tensorflow=to_tensorflow, on_tensorflow=on_tensorflow,
                           back=back, extract_back=project.metrics("extract"),
                           features_back=chunk_files(features),
                           status=project.dvc("status").stdout)


def test_engine_change_reruns_backbone_extract_and_what_follows_nothing_before(engine_change):
    change = engine_change
    assert without_audit(change.to_tensorflow) == ["backbone", "extract", "train_head",
                                                   "finetune", "export",
                                    "evaluate"]
    assert UP_TO_DATE in change.on_tensorflow.status
    # Another engine's rows are never mixed in: everything went through the backbone again.
    images = change.on_tensorflow.extract["images"]
    assert change.on_tensorflow.extract["backbone_images"] == images
    # Switching back reuses the openvino rows of the first run, byte for byte.
    assert "extract" in change.back and "fetch" not in change.back
    assert change.extract_back["backbone_images"] == 0
    assert change.extract_back["reused_images"] == images
    assert change.features_back == change.before.features
    assert UP_TO_DATE in change.status


def test_extract_with_a_converted_backbone_does_not_import_tensorflow(engine_change):
    change = engine_change
    assert change.before.extract["engine"] == "openvino"
    assert change.before.extract["tensorflow_imported"] is False
    assert change.extract_back["tensorflow_imported"] is False
    assert change.on_tensorflow.extract["tensorflow_imported"] is True  # the check can fail


@pytest.fixture(scope="module")
def img_size_change(tiny):
    project, root = tiny.project, tiny.project.root
    # 32 px more is one more step of the backbone's total stride: the feature map grows too.
    size = project.params()["prepare"]["img_size"] + 32
    features_before = split_shape(root / "data/features", "train")
    ran, status = repro_after(project, lambda: project.set_params(**{"prepare.img_size": size}))
    return SimpleNamespace(size=size, ran=ran, status=status, params=project.params(),
                           features_before=features_before,
                           images=split_shape(root / "data/prepared", "train"),
                           features=split_shape(root / "data/features", "train"))


def test_img_size_change_reruns_everything_after_fetch(img_size_change):
    change = img_size_change
    assert set(change.ran) == {"preprocess", "backbone", "extract", "train_head", "train_frozen",
                               "finetune", "export", "evaluate", "audit"}
    count = change.params["prepare"]["train_count"]
    assert change.images == (count, change.size, change.size, 3)
    # Bigger images, bigger feature map: extract ran on the new images, not stale ones.
    assert change.features[0] == count
    assert change.features[1] > change.features_before[1]
    assert change.features[3] == change.features_before[3]  # same backbone channels
    assert UP_TO_DATE in change.status


def test_metrics_show_puts_the_methods_side_by_side(tiny):
    project = tiny.project
    shown = json.loads(project.dvc("metrics", "show", "--json").stdout)[""]["data"]
    paths = [path for stage in ("train_head", "train_frozen", "finetune")
             for path in declared_outputs(project.root, stage, kinds=("metrics",))
             if path.startswith("metrics/")]
    assert len(paths) == 3
    for path in paths:
        assert shown[path]["data"] == json.loads((project.root / path).read_text())
    table = project.dvc("metrics", "show").stdout.splitlines()
    assert "test_accuracy" in table[0]
    assert set(paths) <= {row.split()[0] for row in table[1:]}


def test_plots_show_renders_every_confusion_matrix(tiny, tmp_path):
    project = tiny.project
    project.dvc("plots", "show", "-o", tmp_path / "plots")
    html = (tmp_path / "plots" / "index.html").read_text()
    shown = json.loads(project.dvc("plots", "show", "--json").stdout)["data"]
    test_count = project.params()["prepare"]["test_count"]
    for method in ("train_head", "train_frozen", "finetune"):
        path = f"metrics/confusion_{method}.csv"
        (vega,) = shown[path]
        title = next(spec[path]["title"] for spec in dvc_yaml(project.root)["stages"]["evaluate"]
                     ["plots"] if path in spec)
        assert title in json.dumps(vega["content"]) and title in html
        assert vega["type"] == "vega"
        spec = json.dumps(vega["content"])
        assert "rect" in spec  # the confusion template draws a heat map
        rows = vega["content"]["data"]["values"]
        assert len(rows) == test_count
        assert {row["actual"] for row in rows} == {f"class_{c}" for c in range(3)}
        assert f"mistakes_{method}.png" in html


def test_report_compares_the_methods(tiny):
    report = (tiny.project.root / "metrics" / "report.md").read_text()
    assert "| bottleneck features (extract, then train_head) |" in report
    assert "| frozen backbone (train_frozen) |" in report
    assert "| fine-tuned (train_head's head, then finetune) |" in report
    assert "**Answer:**" in report and "**Most accurate:**" in report


def test_plots_show_draws_every_training_curve_from_dvclive(tiny, tmp_path):
    project = tiny.project
    project.dvc("plots", "show", "-o", tmp_path / "plots")
    shown = json.loads(project.dvc("plots", "show", "--json").stdout)["data"]
    charts = dvc_yaml(project.root)["plots"]
    epochs = project.params()["train_head"]["epochs"]
    assert len(charts) >= 1
    for chart in charts:
        (title, spec), = chart.items()
        assert len(spec["y"]) == 3, "each chart compares the three methods"
        (vega,) = shown[title]
        rows = vega["content"]["data"]["values"]
        for tsv_path, column in spec["y"].items():
            stage = Path(tsv_path).parts[1]
            # DVC names each file without the folder the three share (dvclive/).
            drawn = [(int(row["step"]), float(row[column])) for row in rows
                     if f"/{tsv_path}".endswith(f"/{row['filename']}")]
            steps, values = live_history(project.root / "dvclive" / stage,
                                         f"eval/{Path(tsv_path).stem}")
            assert drawn == list(zip(steps, values)), (title, tsv_path)
            assert steps[0] == 1, "epochs are counted from 1"
            if stage == "train_head":
                assert steps == list(range(1, epochs + 1))


def test_exp_show_lists_each_training_stages_live_metrics(tiny):
    project = tiny.project
    shown = json.loads(project.dvc("exp", "show", "--json").stdout)
    metrics = shown[0]["data"]["metrics"]
    for stage in ("train_head", "train_frozen", "finetune"):
        live = metrics[f"dvclive/{stage}/metrics.json"]["data"]
        summary = json.loads((project.root / f"dvclive/{stage}/metrics.json").read_text())
        assert live == summary and live["step"] == project.metrics(stage)["epochs"]
        # No validation split here: the test accuracy is the last epoch's.
        assert round(live["eval"]["accuracy"], 6) == project.metrics(stage)["test_accuracy"]


def imported_package_modules(path):
    """Names of the keras_bottleneck modules the Python file `path` imports (anywhere in it)."""
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.module == "keras_bottleneck" or (node.level == 1 and node.module is None):
                yield from (alias.name for alias in node.names)
            elif node.level == 1:
                yield node.module.split(".")[0]
            elif node.module and node.module.startswith("keras_bottleneck."):
                yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            yield from (alias.name.split(".")[1] for alias in node.names
                        if alias.name.startswith("keras_bottleneck."))


def modules_run_by(script):
    found, todo = set(), [script]
    while todo:
        for name in imported_package_modules(todo.pop()):
            if name not in found and name not in NOT_OUTPUT_AFFECTING:
                found.add(name)
                todo.append(REPO_ROOT / "keras_bottleneck" / f"{name}.py")
    return {f"keras_bottleneck/{name}.py" for name in found}


def test_each_stage_depends_on_the_code_it_runs():
    """A module missing from a stage's deps would let `dvc repro` keep outputs of old code."""
    declared, run = {}, {}
    for stage, spec in dvc_yaml(REPO_ROOT)["stages"].items():
        script = f"stages/{stage}.py"
        assert spec["cmd"] == f"python {script}"
        assert script in spec["deps"]
        declared[stage] = sorted(dep for dep in spec["deps"] if dep.startswith("keras_bottleneck/"))
        run[stage] = sorted(modules_run_by(REPO_ROOT / script))
    assert declared == run
