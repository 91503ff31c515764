"""benchmarks/extract.py and scale.py run end to end on a tiny setting and report every figure
(their timings are not checked: they mean something only at full size, on a quiet machine)."""
import pytest

from _benchmark import run_benchmark

pytestmark = pytest.mark.slow  # real dvc pipelines, clusters, servers, mounts or benchmarks


METHODS = {"extract", "extract_tensorflow", "openvino", "openvino_sync", "forward", "original"}
TARGETS = {"extract_vs_fastest_bare_engine", "extract_vs_original", "stage_vs_tensorflow_forward",
           "stage_bfloat16_vs_tensorflow_forward", "memory_8n_vs_n", "disk_vs_feature_bytes",
           "repro_head_change_vs_full"}


def test_benchmark_prints_and_writes_every_figure(tmp_path):
    # VGG16 traces fastest; 32 px is its smallest input.
    figures, table = run_benchmark(
        tmp_path, "extract.py", "--images", "16", "--img-size", "32", "--backbone", "vgg16",
        "--batch-size", "8", "--rounds", "1", "--stage-images", "4")
    assert "project extract, openvino engine" in table

    throughput = figures["throughput"]
    assert set(throughput["images_per_s"]) == set(throughput["warm_up_seconds"]) == METHODS
    assert all(speed > 0 for speed in throughput["images_per_s"].values())
    assert throughput["ratios"]["extract_vs_fastest_bare_engine"] > 0

    small, large = figures["memory"]["runs"]
    assert (small["train_images"], large["train_images"]) == (4, 32)
    assert small["peak_rss_bytes"] > 50 * 2**20  # a real process that loaded OpenVINO
    stage = figures["stage"]
    assert stage["images"] == 5 and stage["default_vs_tensorflow_forward"] > 0
    assert stage["bfloat16"]["train_images"] == 4 and stage["native_bfloat16"] in (True, False)

    # 17 images of VGG16's 1x1x512 features at 32 px, as float16, plus labels and class names.
    disk = figures["disk"]
    assert disk["feature_bytes"] > 17 * 512 * 2
    # The project's .dvc/config links outputs to the cache instead of copying them.
    assert disk["workspace_link"] == "hardlink" and disk["workspace_read_only"]
    assert disk["disk_bytes"] < disk["as_copies"]["disk_bytes"]

    assert set(figures["targets"]) == TARGETS
    assert figures["targets"]["repro_head_change_vs_full"]["met"] is None  # needs --repro
    # Measured only on a CPU that computes in bfloat16 (AVX512_BF16 or AMX).
    bfloat16_target = figures["targets"]["stage_bfloat16_vs_tensorflow_forward"]["met"]
    assert (bfloat16_target is None) == (not stage["native_bfloat16"])
    assert all(check["met"] in (True, False) for name, check in figures["targets"].items()
               if name not in ("repro_head_change_vs_full",
                               "stage_bfloat16_vs_tensorflow_forward"))


SCALE_STAGES = ["fetch", "preprocess", "backbone", "extract", "train_head", "train_frozen"]


def test_scale_benchmark_prints_and_writes_every_figure(tmp_path):
    # VGG16's 2x2 feature map at 64 px fits the default head.
    figures, table = run_benchmark(
        tmp_path, "scale.py", "--images", "4", "--img-size", "64", "--backbone", "vgg16",
        "--photos", "4", "--photo-size", "320x240", "--timing-epochs", "2", "--rounds", "1",
        "--skip-8n")  # the 8N runs are the same code on more images: a minute more here
    assert "Peak resident memory by stage" in table

    memory = figures["memory"]
    assert memory["images"] == [4]
    assert list(memory["peak_rss_bytes"]) == SCALE_STAGES
    for stage, (peak,) in memory["peak_rss_bytes"].items():
        assert peak > 20 * 2**20, stage  # real processes
    assert memory["peak_rss_bytes"]["extract"][0] > 50 * 2**20  # OpenVINO loaded
    epoch = figures["train_head_epoch"]
    assert epoch["images"] == 4 and all(s > 0 for s in epoch["seconds_per_epoch"].values())
    assert set(epoch["seconds_per_epoch"]) == {"memory", "disk", "single_file"}

    photos = figures["photos"]
    assert photos["photos"] == 4 and photos["size"] == [320, 240]
    assert photos["folder_bytes"] <= photos["raw_bytes"] < 1.05 * photos["folder_bytes"]
    assert 0 <= photos["reduced_decode_mean_abs_difference"]["mean"] < 2
    memory_targets = {name for name in figures["targets"] if name.startswith("memory_8n")}
    assert len(memory_targets) == len(SCALE_STAGES)
    assert all(figures["targets"][name]["met"] is None for name in memory_targets)
    assert all(check["met"] in (True, False) for name, check in figures["targets"].items()
               if name not in memory_targets)


def test_incremental_benchmark_prints_and_writes_every_figure(tmp_path):
    figures, table = run_benchmark(
        tmp_path, "incremental.py", "--images", "20", "--added", "3", "--img-size", "64",
        "--backbone", "vgg16", "--photo-size", "320x240")
    assert "after adding 3" in table and "320x240 images" in table
    repro = figures["repro"]
    assert repro["full"]["backbone_images"] == 22 and repro["full"]["reused_images"] == 0
    assert repro["added"]["backbone_images"] == 3 and repro["added"]["reused_images"] == 22
    # The folder holds ten test images (one a class), of which prepare uses two.
    assert repro["full"]["checked_images"] == 30 and repro["full"]["decoded_images"] == 22
    assert repro["added"]["checked_images"] == repro["added"]["decoded_images"] == 3
    for run in ("full", "added"):  # every stage ran and took time; DVC's share is the rest
        assert all(seconds > 0 for seconds in repro[run]["stage_seconds"].values())
        assert 0 < repro[run]["dvc_seconds"] < repro[run]["seconds"]
    assert "extract" in repro["added"]["stages_run"]
    assert 1 < figures["disk"]["store_vs_features"] < 1.1
    moved = figures["bytes"]
    for run in ("first", "added"):
        assert moved[run]["cache_growth"] > 0 and moved[run]["pushed_files"] > 0
    # Adding 3 images to 22 sends far less than the first push, and no old chunk again.
    assert 0 < moved["pushed_vs_first"] < 0.5 and 0 < moved["cache_growth_vs_first"] < 0.5
    assert figures["repro"]["backbone_images_vs_added"] == 1
    assert set(figures["targets"]) == {"repro_after_adding_vs_full", "backbone_images_vs_added",
                                       "store_bytes_vs_feature_bytes", "cache_growth_vs_first",
                                       "cache_growth_vs_first_data", "pushed_vs_first_push",
                                       "disk_vs_live_rows_after_removing_30_percent"}
    removal = figures["removal"]
    assert removal["removed_images"] == 6  # 30 % of 23 train images
    assert 1 <= removal["worst_stored_vs_live"] <= 1.5
