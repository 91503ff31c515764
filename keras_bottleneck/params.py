"""Load params.yaml, fill in defaults and validate every value before any heavy work.

`load` returns a Params: one small frozen object per section (params.prepare.img_size), so that
library functions take the sections they use, never the whole file. Each section's keys are
declared once below, with their default (the original experiment's) and their check.
"""
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from . import backbones, engines
from .errors import PipelineError


def _check(test, meaning):
    test.__doc__ = meaning
    return test


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


POSITIVE_INT = _check(lambda v: _is_int(v) and v > 0, "a whole number above 0")
NON_NEGATIVE_INT = _check(lambda v: _is_int(v) and v >= 0, "a whole number, 0 or more")
FRACTION = _check(lambda v: _is_number(v) and 0 <= v < 1, "a number from 0 up to (not including) 1")
POSITIVE_NUMBER = _check(lambda v: _is_number(v) and v > 0, "a number above 0")
NON_NEGATIVE_NUMBER = _check(lambda v: _is_number(v) and v >= 0, "a number, 0 or more")
AREA = _check(lambda v: _is_number(v) and 0 < v <= 1,
              "a fraction of the image's area above 0, at most 1")
ASPECT = _check(lambda v: _is_number(v) and v >= 1, "a ratio of 1 (square crops only) or more")
BOOL = _check(lambda v: isinstance(v, bool), "true or false")
TEXT = _check(lambda v: isinstance(v, str) and v != "", "a non-empty string")
STRING = _check(lambda v: isinstance(v, str), "a string (may be empty)")
FOLDS = _check(lambda v: _is_int(v) and v >= 2, "a whole number, 2 or more")
HAMMING = _check(lambda v: _is_int(v) and 0 <= v <= 64, "a whole number of bits from 0 to 64")
UNITS = _check(lambda v: isinstance(v, (list, tuple)) and all(POSITIVE_INT(u) for u in v),
               "a list of whole numbers above 0, e.g. [256]")


def one_of(*choices):
    return _check(lambda v: v in choices, " or ".join(map(str, choices)))


def key(default, check):
    """A section's key: its default and the check its value must pass."""
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class Data:
    source: str = key("cifar10", one_of("cifar10", "folder"))
    path: str = key("data/source", TEXT)


@dataclass(frozen=True)
class Prepare:
    train_count: int = key(1000, POSITIVE_INT)
    test_count: int = key(100, POSITIVE_INT)
    validation_count: int = key(0, NON_NEGATIVE_INT)
    img_size: int = key(139, POSITIVE_INT)
    stratify: bool = key(False, BOOL)
    shuffle: bool = key(False, BOOL)
    seed: int = key(0, NON_NEGATIVE_INT)
    exclude: str = key("data/exclude.txt", TEXT)


@dataclass(frozen=True)
class Backbone:
    name: str = key("resnet50", TEXT)
    weights: str = key("imagenet", TEXT)
    alpha: float = key(1.0, POSITIVE_NUMBER)


@dataclass(frozen=True)
class Extract:
    batch_size: int = key(16, POSITIVE_INT)
    dtype: str = key("float16", one_of("float16", "float32"))
    augment_copies: int = key(0, NON_NEGATIVE_INT)
    engine: str = key("openvino", one_of(*engines.REGISTRY))
    precision: str = key("float32", one_of("float32", "bfloat16"))
    pool: str = key("none", one_of("none", "avg"))


@dataclass(frozen=True)
class Augment:
    seed: int = key(0, NON_NEGATIVE_INT)
    flip: bool = key(True, BOOL)
    crop_min_area: float = key(0.35, AREA)
    crop_max_aspect: float = key(1.33, ASPECT)


@dataclass(frozen=True)
class Head:
    filters: int = key(100, NON_NEGATIVE_INT)
    kernel_size: int = key(2, POSITIVE_INT)
    conv_dropout: float = key(0.4, FRACTION)
    dropout: float = key(0.3, FRACTION)
    hidden_units: tuple = key((), UNITS)


@dataclass(frozen=True)
class Train:
    batch_size: int = key(32, POSITIVE_INT)
    learning_rate: float = key(0.001, POSITIVE_NUMBER)
    seed: int = key(0, NON_NEGATIVE_INT)
    deterministic: bool = key(True, BOOL)


@dataclass(frozen=True)
class Epochs:
    """train_head and train_frozen: how long to train (the learning rate is train's)."""
    epochs: int = key(9, POSITIVE_INT)


@dataclass(frozen=True)
class Finetune:
    unfreeze: int = key(3, POSITIVE_INT)
    learning_rate: float = key(1e-5, POSITIVE_NUMBER)
    epochs: int = key(2, POSITIVE_INT)


@dataclass(frozen=True)
class Predict:
    mirror: bool = key(False, BOOL)


@dataclass(frozen=True)
class Export:
    model: str = key("head", one_of("head", "finetune"))


@dataclass(frozen=True)
class Evaluate:
    mistakes: int = key(16, POSITIVE_INT)


@dataclass(frozen=True)
class Audit:
    folds: int = key(10, FOLDS)
    regularization: float = key(0.003, POSITIVE_NUMBER)
    seed: int = key(0, NON_NEGATIVE_INT)
    hash_distance: int = key(6, HAMMING)
    shown: int = key(16, POSITIVE_INT)


@dataclass(frozen=True)
class Compute:
    """Where preprocess and extract run; no stage depends on it: it never changes an output."""
    engine: str = key("local", one_of("local", "ray"))
    address: str = key("", STRING)
    workers: int = key(0, NON_NEGATIVE_INT)
    cpus_per_worker: int = key(1, POSITIVE_INT)
    gpus_per_worker: float = key(0, NON_NEGATIVE_NUMBER)


@dataclass(frozen=True)
class Params:
    """Every section of params.yaml, validated, defaults filled in."""
    data: Data
    prepare: Prepare
    backbone: Backbone
    extract: Extract
    augment: Augment
    head: Head
    train: Train
    train_head: Epochs
    train_frozen: Epochs
    finetune: Finetune
    predict: Predict
    export: Export
    evaluate: Evaluate
    audit: Audit
    compute: Compute


SECTIONS = {section.name: section.type for section in fields(Params)}


def section(name, given=None, source="params.yaml"):
    """Section `name` (e.g. "prepare") from the mapping `given`: defaults filled in, every
    value checked (a PipelineError naming the key), unknown keys warned about."""
    kind = SECTIONS[name]
    given = {} if given is None else given  # an empty section: every default
    if not isinstance(given, dict):
        raise PipelineError(f"{source}: '{name}' must be a mapping of keys, got {given!r}")
    values = {}
    for entry in fields(kind):
        value = given.get(entry.name, entry.default)
        check = entry.metadata["check"]
        if not check(value):
            raise PipelineError(f"{source}: {name}.{entry.name} = {value!r} is invalid: "
                                f"it must be {check.__doc__}")
        values[entry.name] = tuple(value) if isinstance(value, list) else value
    known = [entry.name for entry in fields(kind)]
    for unknown in given.keys() - set(known):
        print(f"warning: {source}: unknown key {name}.{unknown} ignored "
              f"(a typo? known keys: {', '.join(known)})", file=sys.stderr)
    return kind(**values)


def validate(raw, source="params.yaml"):
    """A complete Params (defaults filled in) from a params mapping; raise PipelineError on a
    bad value, warn on stderr about keys we do not know (most likely typos)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    for unknown in raw.keys() - SECTIONS.keys():
        print(f"warning: {source}: unknown section '{unknown}' ignored "
              f"(known sections: {', '.join(SECTIONS)})", file=sys.stderr)
    return Params(**{name: section(name, raw.get(name), source) for name in SECTIONS})


def load(path="params.yaml"):
    """Read and validate a params file, as DVC reads it (YAML 1.2, where `yes` is a string and
    1e-3 a number; PyYAML's YAML 1.1 reads them the other way round)."""
    path = Path(path)
    try:
        raw = YAML(typ="safe").load(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: run the stage from the project's root") from None
    except YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML: {error}".replace("\n", " ")) from None
    params = validate(raw, str(path))
    backbones.check(params.backbone, params.prepare.img_size)
    return params
