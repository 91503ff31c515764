"""Every method on real data, through the real pipeline, as benchmarks/accuracy.py measures it:
CIFAR-10 JPEGs through ImageNet MobileNet (alpha 0.25) at 139 px, 100 train (10 of them
validation) and 100 test images per class, every prediction averaged with the mirror image's.
Needs ../shared (the team's data and weights)."""
import pytest

from conftest import SHARED_CIFAR_JPG, SHARED_MOBILENET, needs_shared
from _benchmark import run_benchmark

pytestmark = pytest.mark.slow  # real dvc pipelines, clusters, servers, mounts or benchmarks

# The original method reaches 0.58 on this data; random weights give 0.10 (10 classes), so
# these floors fail if the ImageNet weights, the preprocessing or a head are wrong.
HEAD_FLOOR, FROZEN_FLOOR = 0.55, 0.40
# The target of issue #10: the best method, its epoch chosen on the validation split.
BEST_TARGET = 0.66


@needs_shared(SHARED_CIFAR_JPG, SHARED_MOBILENET)
def test_the_best_method_reaches_the_target_and_views_and_fine_tuning_beat_the_plain_head(
        tmp_path):
    figures, table = run_benchmark(tmp_path, "accuracy.py", "--img-size", "139", timeout=1200)
    print(table)
    (run,) = figures["runs"]
    assert set(run["stages_run"]["plain"]) == {"fetch", "preprocess", "backbone", "extract",
                                               "train_head", "train_frozen", "finetune",
                                               "export", "evaluate", "audit"}
    # Adding views re-ran extract on the views alone, and what depends on the features (the
    # audit too: it reads the train features, wherever DVC runs it after extract).
    augmented = run["stages_run"]["augmented"]
    assert [stage for stage in augmented if stage != "audit"] == [
        "extract", "train_head", "finetune", "export", "evaluate"]
    assert augmented.index("audit") > augmented.index("extract")
    # 900 train, 100 validation and 1000 test images, and the mirror images of the last two.
    assert run["backbone_images"] == {"plain": 2000 + 1100, "augmented": 6 * 900}
    accuracy = run["accuracy"]
    assert accuracy["plain_head"] >= HEAD_FLOOR
    assert accuracy["frozen_backbone"] >= FROZEN_FLOOR
    assert accuracy["augmented_head"] > accuracy["plain_head"]
    assert accuracy["finetune"] > accuracy["plain_head"]
    assert figures["best"]["accuracy"] >= BEST_TARGET
