"""The figures of benchmarks/extract.py that need whole processes: peak memory of the extract
stage, disk used by its features with DVC, and the cost of `dvc repro`."""
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from keras_bottleneck import storage
from keras_bottleneck.datasets import write_classes
from keras_bottleneck.testing.synthetic import photo

REPO_ROOT = Path(__file__).resolve().parents[1]
# The team's real data and weights (../shared/README.md): absent on a user's machine.
SHARED = REPO_ROOT.parent / "shared"
DATASET = SHARED / "datasets" / "cifar10-jpg-12k.tar.gz"
MOBILENET = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"

# What a copy of the project needs to run its pipeline: code and config, no outputs.
PROJECT_FILES = ["keras_bottleneck", "stages", "dvc.yaml", "params.yaml", "data/exclude.txt",
                 ".dvc/config",
                 ".dvc/.gitignore", ".dvcignore", ".gitignore"]
CLASSES = [f"class_{i}" for i in range(10)]
SOURCE_SIZE = 32  # CIFAR-10's side: the images the original resized up to 139 px


def held_out_count(train_count):
    """The test split keeps the defaults' 10:1 ratio."""
    return max(1, train_count // 10)


def environment():
    # dvc.yaml's `python stages/...` must find this interpreter (a venv not activated, say).
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PATH=path)
    for role in ("AUTHOR", "COMMITTER"):  # git commits in the temporary project
        env.setdefault(f"GIT_{role}_NAME", "benchmark")
        env.setdefault(f"GIT_{role}_EMAIL", "benchmark@example.com")
    return env


def set_params(path, settings, base=None):
    """Write `base` (default: `path` itself) with `settings` ({"section.key": value}) applied
    to the params file `path`."""
    params = yaml.safe_load(Path(base or path).read_text())
    for dotted, value in settings.items():
        section, key = dotted.split(".", 1)
        params[section][key] = value
    Path(path).write_text(yaml.safe_dump(params, sort_keys=False))


def random_images(count, size, seed):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


# --- peak memory of the extract stage --------------------------------------------------------

def write_prepared(directory, train_count, img_size, chunk=256):
    """A data/prepared/ of random images, written in chunks: 8000 images at 139 px are 460 MB
    that this process does not need to hold."""
    directory.mkdir(parents=True)
    counts = {"train": train_count, "validation": 0, "test": held_out_count(train_count)}
    writer = storage.Writer(directory, storage.ARRAY, None, (img_size, img_size, 3), np.uint8)
    splits = {}
    for split, count in counts.items():
        keys = np.zeros((count, 32), np.uint8)
        for start in range(0, count, chunk):
            for offset, image in enumerate(random_images(min(chunk, count - start), img_size,
                                                          seed=start + 7919 * len(splits))):
                keys[start + offset] = np.frombuffer(hashlib.sha256(image.tobytes()).digest(),
                                                     np.uint8)
                writer.add(keys[start + offset].tobytes(), image)
        splits[split] = (keys, np.arange(count) % len(CLASSES),
                         [f"{split}/{i}.png" for i in range(count)])
    writer.finish(splits)
    write_classes(CLASSES, directory)


# Runs a stage script and, as it exits, writes two peaks (kB) to a file: VmHWM, the high-water
# mark of the script's own process (the parent's ru_maxrss of the child would also count the
# memory of the TensorFlow-laden process that forked it), and the highest sum of the resident
# memory of the process and all its descendants (the workers that fetch, preprocess and predict
# decode on), sampled every 20 ms.
_PEAK_REPORTING_RUNNER = """
import atexit, os, runpy, sys, threading, time
script, report = sys.argv[1:]

def rss_kb(pid, field="VmRSS:"):
    try:
        with open(f"/proc/{pid}/status") as status:
            return int(next(line.split()[1] for line in status if line.startswith(field)))
    except (OSError, StopIteration):
        return 0

def descendants(pid):
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                for child in children.read().split():
                    found += [int(child)] + descendants(int(child))
    except OSError:
        pass
    return found

tree_peak = [0]

def sample():
    while True:
        pids = [os.getpid()] + descendants(os.getpid())
        tree_peak[0] = max(tree_peak[0], sum(rss_kb(pid) for pid in pids))
        time.sleep(0.02)

def write_peak():
    with open(report, "w") as file:
        file.write(f"{rss_kb('self', 'VmHWM:')} {tree_peak[0]}")

threading.Thread(target=sample, daemon=True).start()
atexit.register(write_peak)
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
"""


def run_with_peak(root, script, log_name=None):
    """Run stages/<script>.py (or any script path) in `root` in its own process; return its
    peak resident memory (which counts touched pages of memory-mapped files too), worker
    processes included, and seconds. Linux only: it reads /proc."""
    root = Path(root)
    script = Path(script) if str(script).endswith(".py") else REPO_ROOT / "stages" / f"{script}.py"
    log_path, peak_path = root / f"{log_name or script.stem}.log", root / f"{script.stem}.peak_kb"
    with open(log_path, "w") as log:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", _PEAK_REPORTING_RUNNER, str(script),
                                 str(peak_path)],
                                cwd=root, env=environment(), stdout=log, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{script.name} in {root} failed:\n{log_path.read_text()}")
    main_kb, tree_kb = (int(kb) for kb in peak_path.read_text().split())
    return {"peak_rss_bytes": max(main_kb, tree_kb) * 1024,
            "main_process_peak_rss_bytes": main_kb * 1024,
            "with_workers_peak_rss_bytes": tree_kb * 1024, "seconds": round(seconds, 1)}


def peak_memory_of_extract(workdir, train_count, img_size, settings):
    """Peak memory and seconds of the extract stage on `train_count` (+10%) random images, after
    the backbone stage (timed apart: it runs once, not at every extract)."""
    root = Path(workdir) / f"memory-{train_count}"
    write_prepared(root / "data" / "prepared", train_count, img_size)
    set_params(root / "params.yaml", settings, base=REPO_ROOT / "params.yaml")
    backbone = run_with_peak(root, "backbone")
    run = run_with_peak(root, "extract")
    stage_seconds = json.loads((root / "metrics" / "extract.json").read_text())["seconds"]
    shutil.rmtree(root)
    return {"train_images": train_count, "test_images": held_out_count(train_count), **run,
            "extract_seconds": run["seconds"], "extract_metrics_seconds": stage_seconds,
            "backbone_seconds": backbone["seconds"]}


# --- reporting --------------------------------------------------------------------------------

def require_shared():
    """Exit with one line if the shared CIFAR-10 photos or MobileNet weights are not here."""
    missing = [str(path) for path in (DATASET, MOBILENET) if not path.exists()]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not found: this benchmark needs ../shared")


def progress(message):
    print(message, file=sys.stderr, flush=True)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def lookup(figures, dotted):
    for key in dotted.split("."):
        if not isinstance(figures, dict) or key not in figures:
            return None
        figures = figures[key]
    return figures


def check_targets(figures, targets):
    """{name: value, target, met} for targets {name: (dotted figure, ">=" or "<=", bound)}."""
    checks = {}
    for name, (dotted, comparison, bound) in targets.items():
        value = lookup(figures, dotted)
        met = None if value is None else (value >= bound if comparison == ">=" else value <= bound)
        checks[name] = {"value": value, "target": f"{comparison} {bound}", "met": met}
    return checks


def conditions(**settings):
    """What the figures were measured under: settings, CPU (and whether it computes in bfloat16
    natively), TensorFlow, OpenVINO, load at the start."""
    import openvino as ov
    import tensorflow as tf
    from keras_bottleneck.engines import native_bfloat16
    return {**settings, "cpus": os.cpu_count(), "cpu": cpu_model(),
            "native_bfloat16": native_bfloat16(), "tensorflow": tf.__version__,
            "openvino": ov.get_version().split("-")[0],
            "load_average_start": [round(load, 1) for load in os.getloadavg()]}


def report(figures, targets, print_table, json_path=None):
    """Check the targets, print the table and the JSON (also to `json_path`)."""
    figures["conditions"]["load_average_end"] = [round(load, 1) for load in os.getloadavg()]
    figures["targets"] = check_targets(figures, targets)
    print_table(figures)
    text = json.dumps(figures, indent=2)
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n")


def print_targets(checks):
    print("\nTargets:")
    for name, check in checks.items():
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[check["met"]]
        print(f"  {name:34} {check['target']:8} {check['value']!s:>8}  {verdict}")
    print()


# --- a project copy run by DVC ----------------------------------------------------------------

def save_images(folders, count, seed, photo_size=None, prefix=""):
    """`count` images put in `folders` in turn: random 32 px PNGs (CIFAR-10's size), or with
    `photo_size` (width, height) photo-like JPEGs, whose decoding costs what a photo's does."""
    if photo_size:
        for i in range(count):
            folder = Path(folders[i % len(folders)])
            folder.mkdir(parents=True, exist_ok=True)
            photo(*photo_size, seed=seed * 1_000_000 + i).save(
                folder / f"{prefix}{i:05d}.jpg", quality=90)
        return
    for i, image in enumerate(random_images(count, SOURCE_SIZE, seed)):
        folder = Path(folders[i % len(folders)])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{prefix}{i:05d}.png")


def write_folder_dataset(root, train_count, seed=0, photo_size=None):
    """train/<class>/* and test/<class>/* images (see save_images), at least one of each class
    in each split (the folder source requires it)."""
    for split, count in (("train", train_count), ("test", held_out_count(train_count))):
        save_images([Path(root) / split / name for name in CLASSES],
                    max(count, len(CLASSES)), seed + len(split), photo_size)


class DvcProject:
    """A copy of this project in a temporary git repo on a folder dataset of random images."""

    def __init__(self, root, train_count, settings, dataset=None, test_count=None):
        """A folder dataset of `train_count` random images, or the folder `dataset`."""
        self.root = Path(root)
        for name in PROJECT_FILES:
            source, target = REPO_ROOT / name, self.root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.exists():
                shutil.copy2(source, target)
        if dataset is None:
            write_folder_dataset(self.root / "images", train_count)
        self.set_params({"data.source": "folder", "data.path": str(dataset or "images"),
                         "prepare.train_count": train_count,
                         "prepare.test_count": test_count or held_out_count(train_count),
                         **settings})
        self.run("git", "init", "-q")
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", "benchmark project")

    def set_params(self, settings):
        set_params(self.root / "params.yaml", settings)

    def run(self, *args):
        if args[0] == "dvc":
            args = (sys.executable, "-m", "dvc") + args[1:]
        result = subprocess.run(args, cwd=self.root, env=environment(), capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def timed_repro(self, *targets):
        """Seconds of `dvc repro [targets]` and the stages it ran."""
        started = time.perf_counter()
        output = self.run("dvc", "repro", *targets)
        seconds = time.perf_counter() - started
        ran = [line.split("'")[1] for line in output.splitlines()
               if line.startswith("Running stage '")]
        return {"seconds": round(seconds, 1), "stages_run": ran}

    def params(self):
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def metrics(self, stage):
        return json.loads((self.root / "metrics" / f"{stage}.json").read_text())

    def output_hash(self, path):
        """The md5 that dvc.lock records for output `path`."""
        for stage in yaml.safe_load((self.root / "dvc.lock").read_text())["stages"].values():
            for out in stage.get("outs", []):
                if out["path"] == path:
                    return out["md5"]
        raise KeyError(path)

    def cache_file(self, md5):
        return self.root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]

    def disk_usage(self, path="data/features"):
        """Bytes of `path` (a directory output) vs the disk blocks it takes in the workspace
        plus the DVC cache, a file linked from both places counted once."""
        workspace = sorted(p for p in (self.root / path).rglob("*") if not p.is_dir())
        listing = self.cache_file(self.output_hash(path))
        cached = [listing] + [self.cache_file(entry["md5"])
                              for entry in json.loads(listing.read_text())]
        seen, blocks = set(), 0
        for file in workspace + cached:
            status = file.lstat()
            if (status.st_dev, status.st_ino) not in seen:
                seen.add((status.st_dev, status.st_ino))
                blocks += status.st_blocks * 512
        sample = max(workspace, key=lambda file: file.stat().st_size)
        if sample.is_symlink():
            link = "symlink"
        elif sample.stat().st_nlink > 1:
            link = "hardlink"
        else:
            link = "copy (or reflink: then du counts shared blocks twice)"
        data_bytes = sum(file.stat().st_size for file in workspace)
        return {"feature_bytes": data_bytes, "disk_bytes": blocks,
                "ratio": round(blocks / data_bytes, 3), "workspace_link": link,
                "workspace_read_only": not sample.stat().st_mode & 0o222}

    def disk_usage_as_copies(self, path="data/features"):
        """The same measure with copies, what DVC's default cache.type (reflink,copy) gives
        where reflinks are unsupported; the project's own setting is restored afterwards."""
        self.run("dvc", "config", "--local", "cache.type", "copy")
        self.run("dvc", "checkout", "--relink", path)
        usage = self.disk_usage(path)
        self.run("dvc", "config", "--local", "--unset", "cache.type")
        self.run("dvc", "checkout", "--relink", path)
        return usage
