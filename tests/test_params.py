"""params.yaml: defaults filled in, every bad value a one-line error naming its key, unknown
keys a warning."""
from dataclasses import FrozenInstanceError, asdict

import pytest
import yaml
from conftest import REPO_ROOT

from keras_bottleneck.params import Backbone
from keras_bottleneck import params
from keras_bottleneck.errors import PipelineError


def write_params(tmp_path, content):
    path = tmp_path / "params.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def test_defaults_are_the_original_experiment():
    filled = params.validate({"prepare": {"img_size": 64}, "backbone": {"name": "mobilenet"}})
    # No validation split: the test split scores every epoch, as in the original.
    assert asdict(filled.prepare) == {"train_count": 1000, "test_count": 100,
                                      "validation_count": 0, "img_size": 64, "stratify": False,
                                      "shuffle": False, "seed": 0, "exclude": "data/exclude.txt"}
    assert filled.backbone == Backbone(name="mobilenet", weights="imagenet", alpha=1.0)
    assert filled.head.filters == 100 and filled.head.kernel_size == 2
    assert filled.head.hidden_units == ()
    assert filled.train.batch_size == 32 and filled.train.learning_rate == 0.001
    assert filled.train_head.epochs == filled.train_frozen.epochs == 9
    assert params.validate(None).data.source == "cifar10"


def test_sections_are_frozen_and_lists_become_tuples():
    filled = params.validate({"head": {"hidden_units": [256, 64]}})
    assert filled.head.hidden_units == (256, 64)
    with pytest.raises(FrozenInstanceError):
        filled.head.filters = 3


def test_the_projects_params_yaml_is_valid_and_complete(capsys):
    loaded = params.load(REPO_ROOT / "params.yaml")
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert {section: set(keys) for section, keys in raw.items()} == \
        {section: set(asdict(getattr(loaded, section))) for section in params.SECTIONS}
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("section, key, value", [
    ("prepare", "train_count", "100"),  # a string where a number belongs
    ("train", "learning_rate", "fast"),
    ("prepare", "test_count", 0),
    ("prepare", "train_count", -5),
    ("train_head", "epochs", 0),
    ("train_frozen", "epochs", -1),
    ("prepare", "img_size", True),  # YAML's `yes`/`true` where a number belongs
    ("extract", "batch_size", 2.5),
    ("head", "dropout", 1.0),
    ("head", "hidden_units", 256),
    ("extract", "dtype", "float64"),
    ("data", "source", "s3"),
    ("prepare", "shuffle", "yes please"),
])
def test_bad_value_names_the_key(section, key, value):
    with pytest.raises(PipelineError) as caught:
        params.validate({section: {key: value}})
    message = str(caught.value)
    assert f"{section}.{key} = {value!r} is invalid: it must be " in message
    assert "\n" not in message


def test_section_that_is_not_a_mapping():
    with pytest.raises(PipelineError, match="'train' must be a mapping"):
        params.validate({"train": 5})


@pytest.mark.parametrize("backbone, img_size, key", [
    ({"name": "resnet5O"}, 64, "backbone.name 'resnet5O' is unknown"),
    ({"name": "inception_v3"}, 64, "prepare.img_size 64 is below inception_v3's minimum"),
    ({"name": "mobilenet", "weights": "weights/missing.h5"}, 64,
     "backbone.weights 'weights/missing.h5' is not a file"),
])
def test_backbone_checks_name_the_key(tmp_path, backbone, img_size, key):
    path = write_params(tmp_path, {"prepare": {"img_size": img_size}, "backbone": backbone})
    with pytest.raises(PipelineError) as caught:
        params.load(path)
    assert key in str(caught.value) and "\n" not in str(caught.value)


def test_weights_path_that_exists_is_accepted(tmp_path):
    weights = tmp_path / "mobilenet.h5"
    weights.write_bytes(b"weights")
    path = write_params(tmp_path, {"backbone": {"name": "mobilenet", "weights": str(weights)}})
    assert params.load(path).backbone.weights == str(weights)


def test_unknown_key_and_section_are_warned_about(tmp_path, capsys):
    path = write_params(tmp_path, {"prepare": {"img_sise": 64}, "trian": {"epochs": 3}})
    loaded = params.load(path)
    err = capsys.readouterr().err
    assert "unknown key prepare.img_sise" in err and "img_size" in err
    assert "unknown section 'trian'" in err
    assert loaded.prepare.img_size == 139


def test_exponent_without_a_dot_is_a_number_as_for_dvc(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-3 as text; DVC, and `dvc exp run -S`, read it as 0.001.
    path = write_params(tmp_path, "train:\n  learning_rate: 1e-3\nprepare:\n  seed: '1e3'\n")
    with pytest.raises(PipelineError, match="prepare.seed = '1e3'"):
        params.load(path)
    path = write_params(tmp_path, "train:\n  learning_rate: 1e-3\n")
    assert params.load(path).train.learning_rate == 0.001


def test_invalid_yaml_is_one_line(tmp_path):
    path = write_params(tmp_path, "prepare:\n  img_size: 64\n train_count: [1\n")
    with pytest.raises(PipelineError, match="is not valid YAML") as caught:
        params.load(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_missing_params_file(tmp_path):
    with pytest.raises(PipelineError, match="not found: run the stage from the project's root"):
        params.load(tmp_path / "params.yaml")


def test_top_level_that_is_not_a_mapping(tmp_path):
    with pytest.raises(PipelineError, match="expected a mapping of sections, got list"):
        params.load(write_params(tmp_path, "- prepare\n- train\n"))


def test_yes_is_read_as_dvc_records_it_and_refused_as_not_a_boolean(tmp_path):
    # YAML 1.2, as DVC reads params (dvc.lock, `dvc exp show`): `yes` is the string "yes", not
    # PyYAML's (YAML 1.1) True, so the stage must not run with a value DVC records otherwise.
    from dvc.utils.serialize import parse_yaml
    text = "prepare:\n  shuffle: yes\n"
    assert parse_yaml(text, "params.yaml")["prepare"]["shuffle"] == "yes"
    with pytest.raises(PipelineError) as caught:
        params.load(write_params(tmp_path, text))
    assert str(caught.value) == (f"{tmp_path / 'params.yaml'}: prepare.shuffle = 'yes' is "
                                 "invalid: it must be true or false")


def test_a_section_written_as_a_number_is_one_line_not_the_defaults(tmp_path):
    with pytest.raises(PipelineError) as caught:
        params.load(write_params(tmp_path, "train: 0\n"))
    assert "'train' must be a mapping of keys, got 0" in str(caught.value)
    assert "\n" not in str(caught.value)
