"""benchmarks/extract.py runs end to end on a tiny setting and reports every figure (its timings
are not checked: they mean something only at full size, on a quiet machine)."""
import json
import subprocess
import sys

from conftest import REPO_ROOT, subprocess_env

METHODS = {"extract", "forward", "forward_jit", "original"}
TARGETS = {"extract_vs_compiled_forward", "extract_vs_original", "memory_8n_vs_n",
           "disk_vs_feature_bytes", "repro_head_change_vs_full"}


def test_benchmark_prints_and_writes_every_figure(tmp_path):
    report = tmp_path / "figures.json"
    env = dict(subprocess_env(tmp_path), TMPDIR=str(tmp_path))  # its scratch files too
    # VGG16 traces fastest; 32 px is its smallest input.
    result = subprocess.run(
        [sys.executable, "benchmarks/extract.py", "--images", "16", "--img-size", "32",
         "--backbone", "vgg16", "--batch-size", "8", "--rounds", "1", "--memory-images", "4",
         "--json", str(report)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = json.loads(report.read_text())
    table, _, printed_json = result.stdout.partition("\n{")
    assert json.loads("{" + printed_json) == figures
    assert "Targets:" in table and "project extract path" in table

    throughput = figures["throughput"]
    assert set(throughput["images_per_s"]) == set(throughput["warm_up_seconds"]) == METHODS
    assert all(speed > 0 for speed in throughput["images_per_s"].values())
    assert throughput["ratios"]["extract_vs_compiled_forward"] > 0

    small, large = figures["memory"]["runs"]
    assert (small["train_images"], large["train_images"]) == (4, 32)
    assert small["peak_rss_bytes"] > 100 * 2**20  # a real process that loaded TensorFlow

    # 17 images of VGG16's 1x1x512 features at 32 px, as float16, plus labels and class names.
    disk = figures["disk"]
    assert disk["feature_bytes"] > 17 * 512 * 2
    # The project's .dvc/config links outputs to the cache instead of copying them.
    assert disk["workspace_link"] == "hardlink" and disk["workspace_read_only"]
    assert disk["disk_bytes"] < disk["as_copies"]["disk_bytes"]

    assert set(figures["targets"]) == TARGETS
    assert figures["targets"]["repro_head_change_vs_full"]["met"] is None  # needs --repro
    assert all(check["met"] in (True, False) for name, check in figures["targets"].items()
               if name != "repro_head_change_vs_full")
