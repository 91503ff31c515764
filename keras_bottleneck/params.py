"""Load params.yaml, fill in defaults and validate every value before any heavy work."""
import sys
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from . import backbones
from .errors import PipelineError


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _non_negative_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fraction(value):
    return _number(value) and 0 <= value < 1


def _area(value):
    return _number(value) and 0 < value <= 1


def _aspect(value):
    return _number(value) and value >= 1


def _positive_number(value):
    return _number(value) and value > 0


def _bool(value):
    return isinstance(value, bool)


def _one_of(*choices):
    def check(value):
        return value in choices
    check.__doc__ = " or ".join(map(str, choices))
    return check


def _text(value):
    return isinstance(value, str) and value != ""


def _string(value):
    return isinstance(value, str)


def _non_negative_number(value):
    return _number(value) and value >= 0


def _folds(value):
    return _positive_int(value) and value >= 2


def _hamming(value):
    return _non_negative_int(value) and value <= 64


def _units(value):
    return isinstance(value, list) and all(_positive_int(unit) for unit in value)


_positive_int.__doc__ = "a whole number above 0"
_non_negative_int.__doc__ = "a whole number, 0 or more"
_fraction.__doc__ = "a number from 0 up to (not including) 1"
_positive_number.__doc__ = "a number above 0"
_area.__doc__ = "a fraction of the image's area above 0, at most 1"
_aspect.__doc__ = "a ratio of 1 (square crops only) or more"
_bool.__doc__ = "true or false"
_text.__doc__ = "a non-empty string"
_string.__doc__ = "a string (may be empty)"
_non_negative_number.__doc__ = "a number, 0 or more"
_folds.__doc__ = "a whole number, 2 or more"
_hamming.__doc__ = "a whole number of bits from 0 to 64"
_units.__doc__ = "a list of whole numbers above 0, e.g. [256]"

# section -> key -> (default, check). The defaults reproduce the original experiment.
SCHEMA = {
    "data": {
        "source": ("cifar10", _one_of("cifar10", "folder")),
        "path": ("data/source", _text),
    },
    "prepare": {
        "train_count": (1000, _positive_int),
        "test_count": (100, _positive_int),
        "validation_count": (0, _non_negative_int),
        "img_size": (139, _positive_int),
        "stratify": (False, _bool),
        "shuffle": (False, _bool),
        "seed": (0, _non_negative_int),
        "exclude": ("data/exclude.txt", _text),
    },
    "backbone": {
        "name": ("resnet50", _text),
        "weights": ("imagenet", _text),
        "alpha": (1.0, _positive_number),
    },
    "extract": {
        "batch_size": (16, _positive_int),
        "dtype": ("float16", _one_of("float16", "float32")),
        "augment_copies": (0, _non_negative_int),
        "engine": ("openvino", _one_of("openvino", "tensorflow")),
        "precision": ("float32", _one_of("float32", "bfloat16")),
        "pool": ("none", _one_of("none", "avg")),
    },
    "augment": {
        "seed": (0, _non_negative_int),
        "flip": (True, _bool),
        "crop_min_area": (0.35, _area),
        "crop_max_aspect": (1.33, _aspect),
    },
    "head": {
        "filters": (100, _non_negative_int),
        "kernel_size": (2, _positive_int),
        "conv_dropout": (0.4, _fraction),
        "dropout": (0.3, _fraction),
        "hidden_units": ([], _units),
    },
    "train": {
        "batch_size": (32, _positive_int),
        "learning_rate": (0.001, _positive_number),
        "seed": (0, _non_negative_int),
        "deterministic": (True, _bool),
    },
    "train_head": {"epochs": (9, _positive_int)},
    "train_frozen": {"epochs": (9, _positive_int)},
    "finetune": {
        "unfreeze": (3, _positive_int),
        "learning_rate": (1e-5, _positive_number),
        "epochs": (2, _positive_int),
    },
    "predict": {"mirror": (False, _bool)},
    "export": {"model": ("head", _one_of("head", "finetune"))},
    "evaluate": {"mistakes": (16, _positive_int)},
    "audit": {
        "folds": (10, _folds),
        "regularization": (0.003, _positive_number),
        "seed": (0, _non_negative_int),
        "hash_distance": (6, _hamming),
        "shown": (16, _positive_int),
    },
    # Where preprocess and extract run; no stage depends on it: it never changes an output.
    "compute": {
        "engine": ("local", _one_of("local", "ray")),
        "address": ("", _string),
        "workers": (0, _non_negative_int),
        "cpus_per_worker": (1, _positive_int),
        "gpus_per_worker": (0, _non_negative_number),
    },
}


def validate(raw, source="params.yaml"):
    """Return a complete params dict (defaults filled in); raise PipelineError on a bad value,
    warn on stderr about keys we do not know (most likely typos)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    params = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section)
        given = {} if given is None else given  # an empty section: every default
        if not isinstance(given, dict):
            raise PipelineError(f"{source}: '{section}' must be a mapping of keys, "
                                f"got {given!r}")
        params[section] = {}
        for key, (default, check) in keys.items():
            value = given.get(key, default)
            if not check(value):
                raise PipelineError(f"{source}: {section}.{key} = {value!r} is invalid: "
                                    f"it must be {check.__doc__}")
            params[section][key] = value
        for key in given.keys() - keys.keys():
            print(f"warning: {source}: unknown key {section}.{key} ignored "
                  f"(a typo? known keys: {', '.join(keys)})", file=sys.stderr)
    for section in raw.keys() - SCHEMA.keys():
        print(f"warning: {source}: unknown section '{section}' ignored "
              f"(known sections: {', '.join(SCHEMA)})", file=sys.stderr)
    return params


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
    backbones.check(params["backbone"], params["prepare"]["img_size"])
    return params
