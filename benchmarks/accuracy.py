"""Test accuracy of every method on real photos, and what each costs: the plain head on bottleneck
features, the head on cached augmented views, the fine-tuned model and the frozen backbone.

Real CIFAR-10 JPEGs and ImageNet MobileNet (alpha 0.25) from ../shared: 100 train images per
class (VALIDATION of them held out to choose the epoch) and 100 test images per class. The
pipeline runs twice through `dvc repro`: without views (extract.augment_copies 0), then with
SMALL_DATA's; the second extract runs the backbone on the views only. Every figure is one run.

    python benchmarks/accuracy.py --engines   # the heads on each engine's features instead

With --engines: the plain and the augmented head (train_head, the same settings) on the features
of each engine and precision, and on pooled features (extract.pool avg), 3 seeds each
(train.seed), against TensorFlow float32's features: what choosing an engine costs in accuracy.
"""
import argparse
import tempfile
from pathlib import Path

from _pipeline import (DATASET, MOBILENET, DvcProject, conditions, print_targets, progress,
                       report, require_shared)

PER_CLASS, VALIDATION = 100, 100

# What suits about 100 images per class (docs/augmentation.md): a linear
# classifier on pooled features, trained long on 6 cached views of each image; then the top
# two layers of MobileNet (its last depthwise-separable block) fine-tuned. Unless --no-mirror,
# every prediction is averaged with the mirror image's (predict.mirror).
SMALL_DATA = {
    "head.filters": 0,
    "head.dropout": 0.5,
    "augment.crop_min_area": 0.6,
    "train_head.epochs": 60,
    "finetune.unfreeze": 2,
    "finetune.learning_rate": 0.0001,
    "finetune.epochs": 3,
}
COPIES = 6

# extract.* of each variant of --engines; the first is the reference.
VARIANTS = {
    "tensorflow_float32": {"extract.engine": "tensorflow", "extract.precision": "float32"},
    "openvino_float32": {"extract.engine": "openvino", "extract.precision": "float32"},
    "openvino_bfloat16": {"extract.engine": "openvino", "extract.precision": "bfloat16"},
    "openvino_float32_pooled": {"extract.engine": "openvino", "extract.precision": "float32",
                                "extract.pool": "avg"},
}
SEEDS = (0, 1, 2)
ENGINE_TARGETS = {
    "default_minus_tensorflow_float32": ("mean_minus_reference.openvino_float32", ">=", -0.005),
    "pooled_minus_feature_map": ("pooled_minus_map", ">=", -0.003),
}

TARGETS = {
    "best_method_accuracy": ("best.accuracy", ">=", 0.66),
    "augmented_head_minus_plain_head": ("gains.augmented_head", ">=", 0.001),
    "finetune_minus_plain_head": ("gains.finetune", ">=", 0.001),
}


def project_settings(img_size, weights, mirror):
    return {"prepare.img_size": img_size, "prepare.stratify": True,
                "prepare.validation_count": VALIDATION, "backbone.name": "mobilenet",
                "backbone.alpha": 0.25, "backbone.weights": str(weights),
                "train_frozen.epochs": 9, "predict.mirror": mirror, **SMALL_DATA}


def measure(workdir, img_size, dataset=DATASET, weights=MOBILENET, mirror=True):
    settings = project_settings(img_size, weights, mirror)
    project = DvcProject(Path(workdir) / f"project_{img_size}", PER_CLASS * 10, settings,
                         dataset=dataset, test_count=PER_CLASS * 10)
    progress(f"{img_size} px: the pipeline without views")
    plain_run = project.timed_repro()
    plain = {stage: project.metrics(stage)
             for stage in ("extract", "train_head", "train_frozen", "finetune")}
    progress(f"{img_size} px: with {COPIES} cached views of each train image")
    project.set_params({"extract.augment_copies": COPIES})
    augmented_run = project.timed_repro()
    augmented = {stage: project.metrics(stage) for stage in ("extract", "train_head", "finetune")}
    accuracy = {"plain_head": plain["train_head"]["test_accuracy"],
                "frozen_backbone": plain["train_frozen"]["test_accuracy"],
                "augmented_head": augmented["train_head"]["test_accuracy"],
                "finetune": augmented["finetune"]["test_accuracy"]}
    seconds = {
        "extract": plain["extract"]["seconds"],
        "extract_views_extra": augmented["extract"]["seconds"],
        "plain_head": plain["train_head"]["train_seconds"],
        "augmented_head": augmented["train_head"]["train_seconds"],
        "finetune": augmented["finetune"]["train_seconds"],
        "frozen_backbone": plain["train_frozen"]["train_seconds"],
    }
    best = max(accuracy, key=accuracy.get)
    return {
        "img_size": img_size, "accuracy": accuracy, "seconds": seconds,
        "best": {"method": best, "accuracy": accuracy[best]},
        "gains": {method: round(accuracy[method] - accuracy["plain_head"], 6)
                  for method in ("augmented_head", "finetune")},
        "backbone_images": {"plain": plain["extract"]["backbone_images"],
                            "augmented": augmented["extract"]["backbone_images"]},
        "stages_run": {"plain": plain_run["stages_run"], "augmented": augmented_run["stages_run"]},
        "repro_seconds": {"plain": plain_run["seconds"], "augmented": augmented_run["seconds"]},
    }


def measure_engines(workdir, img_size, dataset=DATASET, weights=MOBILENET, mirror=True):
    """Test accuracy of the plain and the augmented head on each variant's features, per seed;
    the mean over both heads and every seed, and its difference from the reference's."""
    project = DvcProject(Path(workdir) / "engines", PER_CLASS * 10,
                         project_settings(img_size, weights, mirror), dataset=dataset,
                         test_count=PER_CLASS * 10)
    accuracy = {}
    for variant, extract in VARIANTS.items():
        accuracy[variant] = {}
        for copies, head in ((0, "plain_head"), (COPIES, "augmented_head")):
            for seed in SEEDS:
                progress(f"{variant}, {head}, seed {seed}")
                project.set_params({"extract.pool": "none", **extract,
                                    "extract.augment_copies": copies, "train.seed": seed})
                project.timed_repro("train_head")
                accuracy[variant][f"{head}_seed_{seed}"] = \
                    project.metrics("train_head")["test_accuracy"]
    means = {variant: round(sum(runs.values()) / len(runs), 4)
             for variant, runs in accuracy.items()}
    reference = means["tensorflow_float32"]
    return {"img_size": img_size, "seeds": list(SEEDS), "accuracy": accuracy, "mean": means,
            "mean_minus_reference": {variant: round(mean - reference, 4)
                                     for variant, mean in means.items()},
            "pooled_minus_map": round(means["openvino_float32_pooled"]
                                      - means["openvino_float32"], 4)}


def print_engines_table(figures):
    print("\nTest accuracy of the plain and the augmented head by the engine of their features "
          f"(mean of seeds {figures['seeds']}):")
    for variant, mean in figures["mean"].items():
        print(f"  {variant:26} {mean:.4f}  ({figures['mean_minus_reference'][variant]:+.4f} "
              "against tensorflow_float32)")
    print_targets(figures["targets"])


def print_table(figures):
    print("\nTest accuracy (epoch chosen on the validation split) and seconds each costs:")
    print(f"{'img':>5}  {'method':16} {'accuracy':>8}  seconds")
    for run in figures["runs"]:
        seconds = run["seconds"]
        costs = {"plain_head": f"extract {seconds['extract']:.0f} + {seconds['plain_head']:.0f}",
                 "augmented_head": f"+ views {seconds['extract_views_extra']:.0f} + "
                                   f"{seconds['augmented_head']:.0f}",
                 "finetune": f"augmented head's + {seconds['finetune']:.0f}",
                 "frozen_backbone": f"{seconds['frozen_backbone']:.0f}"}
        for method, accuracy in run["accuracy"].items():
            print(f"{run['img_size']:>5}  {method:16} {accuracy:8.3f}  {costs[method]}")
    print_targets(figures["targets"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--img-size", type=int, nargs="+", default=[139, 224],
                        help="the targets are checked on the first")
    parser.add_argument("--no-mirror", action="store_true",
                        help="predict.mirror false: score each image alone")
    parser.add_argument("--engines", action="store_true",
                        help="compare the heads on each engine's features instead (3 seeds)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    require_shared()
    if args.engines:
        with tempfile.TemporaryDirectory() as workdir:
            figures = measure_engines(workdir, args.img_size[0], mirror=not args.no_mirror)
        figures["conditions"] = conditions(per_class=PER_CLASS, validation=VALIDATION,
                                           augment_copies=COPIES, **SMALL_DATA,
                                           **{"predict.mirror": not args.no_mirror})
        report(figures, ENGINE_TARGETS, print_engines_table, args.json)
        return
    with tempfile.TemporaryDirectory() as workdir:
        runs = [measure(workdir, size, mirror=not args.no_mirror) for size in args.img_size]
    figures = {"conditions": conditions(per_class=PER_CLASS, validation=VALIDATION,
                                        augment_copies=COPIES, **SMALL_DATA,
                                        **{"predict.mirror": not args.no_mirror}),
               "runs": runs, **{key: runs[0][key] for key in ("best", "gains")}}
    report(figures, TARGETS, print_table, args.json)


if __name__ == "__main__":
    main()
