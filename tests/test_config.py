"""The argument parser (src/config.py) and the recipes in config/."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from src.config import (
    CHOICES,
    DEFAULTS,
    DEVICE_SECTIONS,
    Config,
    ConfigError,
    load_config,
    parse_config,
    save_config,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
RECIPES = sorted(CONFIG_DIR.glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_and_copies():
    cfg = parse_config([])
    assert cfg.to_dict() == DEFAULTS
    assert list(cfg.to_dict()) == list(DEFAULTS)
    cfg.to_dict()["scale"].append(9.0)
    cfg.model_kwargs["layers"] = [1]  # mutating the resolved value must not reach DEFAULTS
    assert DEFAULTS["scale"] == parse_config([]).scale and DEFAULTS["model_kwargs"] == {}
    assert set(CHOICES) <= set(DEFAULTS)
    for key, allowed in CHOICES.items():
        assert DEFAULTS[key] in allowed


def test_yaml_then_command_line(tmp_path):
    path = write(tmp_path, "lr: 0.5\nepochs: 7\nmodel: acmix_swin_tiny\n")
    cfg = parse_config(["--config", path, "--lr", "0.2"])
    assert (cfg.lr, cfg.epochs, cfg.model) == (0.2, 7, "acmix_swin_tiny")
    assert cfg.batch_size == DEFAULTS["batch_size"]
    assert parse_config([f"--config={path}", "--epochs=9"]).epochs == 9


RECIPE_WITH_SECTIONS = """
lr: 0.3
amp_level: O1
Ascend: {amp_level: O2, lr: 0.4}
GPU: {amp_level: O3}
CPU: {batch_size: 8}
"""


@pytest.mark.parametrize(
    "extra_yaml, argv, expected",
    [
        ("", [], {"amp_level": "O1", "lr": 0.3, "batch_size": 8}),  # default device_target CPU
        ("", ["--device_target", "Ascend"], {"amp_level": "O2", "lr": 0.4, "batch_size": 128}),
        ("device_target: GPU\n", [], {"amp_level": "O3", "lr": 0.3, "batch_size": 128}),
        ("device_target: GPU\n", ["--device_target", "ascend"], {"amp_level": "O2", "device_target": "Ascend"}),
        ("", ["--device_target", "Ascend", "--lr", "0.01"], {"amp_level": "O2", "lr": 0.01}),
    ],
)
def test_device_sections(tmp_path, extra_yaml: str, argv: List[str], expected: Dict[str, Any]):
    path = write(tmp_path, RECIPE_WITH_SECTIONS + extra_yaml)
    cfg = parse_config(["--config", path, *argv])
    assert {key: getattr(cfg, key) for key in expected} == expected


@pytest.mark.parametrize(
    "argv, key, expected",
    [
        (["--scale", "0.1,1"], "scale", [0.1, 1.0]),
        (["--scale", "[0.1, 1]"], "scale", [0.1, 1.0]),
        (["--mean=0,0.5,1"], "mean", [0.0, 0.5, 1.0]),
        (["--epochs", "1e2"], "epochs", 100),
        (["--lr", "5e-4"], "lr", 5e-4),
        (["--hflip", "0"], "hflip", 0.0),
        (["--distribute"], "distribute", True),
        (["--distribute", "--epochs", "3"], "distribute", True),
        (["--nesterov", "yes"], "nesterov", True),
        (["--nesterov=0"], "nesterov", False),
        (["--nesterov", "False"], "nesterov", False),
        (["--model_kwargs", "{layers: [1, 1, 1, 1], k_att: 5}"], "model_kwargs", {"layers": [1, 1, 1, 1], "k_att": 5}),
        (["--drop_path_rate", "0.3"], "drop_path_rate", 0.3),
        (["--drop_path_rate", "null"], "drop_path_rate", None),
        (["--file_name", "007"], "file_name", "007"),
        (["--device_target", "ascend"], "device_target", "Ascend"),
        (["--amp_level", "o2"], "amp_level", "O2"),
        (["--epochs", "3", "--distribute"], "distribute", True),  # bare bool flag last
        (["--shuffle", "false"], "shuffle", False),
        (["--shuffle=no"], "shuffle", False),
        (["--lr=0.05"], "lr", 0.05),
        (["--model=acmix_swin_tiny"], "model", "acmix_swin_tiny"),
        (["--mean", "-0.5,0,0.5"], "mean", [-0.5, 0.0, 0.5]),  # values may start with "-"
        (["--mean=-0.5,0,0.5"], "mean", [-0.5, 0.0, 0.5]),
        (["--file_name", "-x.mindir"], "file_name", "-x.mindir"),
        (["--auto_augment", "-a b"], "auto_augment", "-a b"),
        (["--predict", "a.png,photos/"], "predict", ["a.png", "photos/"]),
        (["--lr", "0.5", "--lr", "0.2"], "lr", 0.2),  # the last one wins
    ],
)
def test_command_line_coercion(argv: List[str], key: str, expected: Any):
    value = getattr(parse_config(argv), key)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(value, list):
        assert all(type(v) is type(e) for v, e in zip(value, expected))


def test_yaml_coercion(tmp_path):
    # PyYAML reads 5e-4 (no dot) as a string and 1 as an int: both must become floats
    path = write(tmp_path, "lr: 5e-4\nweight_decay: 1\nscale: [0, 1]\nnum_workers: 2.0\nauto_augment:\n")
    cfg = parse_config(["--config", path])
    assert (cfg.lr, cfg.weight_decay, cfg.scale, cfg.num_workers, cfg.auto_augment) == (5e-4, 1.0, [0.0, 1.0], 2, "")
    assert type(cfg.weight_decay) is float and type(cfg.num_workers) is int


def test_single_channel_mean_std():
    cfg = parse_config(["--in_chans", "1", "--mean", "0.5", "--std", "0.25"])
    assert (cfg.mean, cfg.std) == ([0.5], [0.25])


ERRORS = [
    # (yaml text or None, argv, required, substrings of the message)
    ("lrr: 0.1\n", [], (), ["'lrr'", "recipe.yaml", "did you mean", "lr"]),
    ("Ascend:\n  amp_levl: O2\n", [], (), ["'amp_levl'", "section Ascend", "did you mean amp_level"]),
    ("GPU:\n  epochs: many\n", [], (), ["epochs", "'many'", "int", "section GPU"]),
    ("ascend:\n  amp_level: O2\n", [], (), ["'ascend'", "Ascend"]),
    ("CPU: O2\n", [], (), ["CPU", "mapping"]),
    ("GPU:\n  device_target: CPU\n", [], (), ["device_target", "section GPU"]),
    ("- lr\n- 0.1\n", [], (), ["mapping"]),
    ("lr: [0.1\n", [], (), ["not valid YAML"]),
    (None, ["--epohcs", "3"], (), ["'epohcs'", "command line", "did you mean epochs"]),
    (None, ["--epochs", "abc"], (), ["epochs", "'abc'", "int", "command line"]),
    (None, ["--epochs", "2.5"], (), ["epochs", "2.5", "int"]),
    (None, ["--epochs", "true"], (), ["epochs", "int"]),
    (None, ["--lr", "fast"], (), ["lr", "'fast'", "float"]),
    (None, ["--nesterov", "maybe"], (), ["nesterov", "'maybe'", "bool"]),
    (None, ["--scale", "0.1,big"], (), ["scale", "'big'", "float"]),
    (None, ["--scale", "0.1,0.5,1"], (), ["scale", "2 numbers"]),
    (None, ["--mean", "0.5"], (), ["mean", "in_chans=3"]),
    (None, ["--model_kwargs", "layers"], (), ["model_kwargs", "mapping"]),
    (None, ["--opt", "adam"], (), ["opt", "'adam'", "sgd, adamw"]),
    (None, ["--device_target", "TPU"], (), ["device_target", "CPU, GPU, Ascend"]),
    (None, ["--config", "no/such/recipe.yaml"], (), ["not found", "no/such/recipe.yaml"]),
    (None, ["--config"], (), ["--config needs"]),
    (None, ["--epochs"], (), ["--epochs needs a value"]),
    (None, ["--epochs", "3", "--lr"], (), ["--lr needs a value on the command line"]),
    (None, ["--lr", "--epochs", "3"], (), ["--lr needs a value"]),
    (None, ["--config="], (), ["--config needs a recipe path"]),
    (None, ["--lrr", "0.1"], (), ["unknown key 'lrr'", "command line", "did you mean lr"]),
    (None, ["--lrr=0.1"], (), ["unknown key 'lrr'", "did you mean lr"]),
    (None, ["--epoch", "3"], (), ["unknown key 'epoch'", "did you mean epochs"]),  # no abbreviations
    (None, ["--distri"], (), ["unknown key 'distri'", "did you mean distribute"]),
    (None, ["--model_kwargs", "{layers: [1"], (), ["model_kwargs", "'{layers: [1'", "mapping", "command line"]),
    (None, ["--nesterov", "-1"], (), ["nesterov", "bool", "command line"]),
    (None, ["--", "--lr", "0.1"], (), ["unexpected argument '--'"]),
    (None, ["-x"], (), ["unexpected argument '-x'"]),
    (None, ["lr", "0.1"], (), ["unexpected argument 'lr'"]),
    (None, [], ("data_dir",), ["--data_dir is required"]),
    (None, ["--data_dir", ""], ("data_dir",), ["--data_dir is required"]),
    (None, [], ("data_dri",), ["'data_dri'", "did you mean data_dir"]),
]


@pytest.mark.parametrize("text, argv, required, parts", ERRORS)
def test_errors(tmp_path, text, argv, required, parts):
    if text is not None:
        argv = ["--config", write(tmp_path, text), *argv]
    with pytest.raises(ConfigError) as info:
        parse_config(argv, required=required)
    assert isinstance(info.value, ValueError)
    for part in parts:
        assert part in str(info.value)


def test_required_present(tmp_path):
    path = write(tmp_path, "data_dir: /data/x\n")
    assert parse_config(["--config", path], required=("data_dir",)).data_dir == "/data/x"
    assert parse_config(["--data_dir", "d"], required=("data_dir",)).data_dir == "d"


def test_save_load_round_trip(tmp_path):
    cfg = parse_config(["--lr", "0.02", "--scale", "0.5,1", "--model_kwargs", "{layers: [1, 2, 1, 1]}", "--distribute"])
    path = tmp_path / "run" / "nested" / "config.yaml"
    save_config(cfg, str(path))
    assert load_config(str(path)) == cfg
    assert parse_config(["--config", str(path)]).to_dict() == cfg.to_dict()
    cfg.epochs = 3  # overwrite in place
    save_config(cfg, str(path))
    assert load_config(str(path)).epochs == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yaml"]  # no temporary file left
    assert set(yaml.safe_load(path.read_text())) == set(DEFAULTS)


def test_force_is_never_saved(tmp_path):
    """A saved recipe rerun with --config must not start over in (and so delete) a run folder by itself."""
    path = tmp_path / "config.yaml"
    save_config(parse_config(["--force"]), str(path))
    assert load_config(str(path)).force is False


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "epochs: must be >= 1, got 0 from the command line"),
        (["--epochs", "-1"], "epochs: must be >= 1, got -1 from the command line"),
        (["--epochs=-1"], "epochs: must be >= 1, got -1 from the command line"),
        (["--seed", "-1e3"], "seed: must be >= 0, got -1000 from the command line"),
        (["--drop_path_rate", "-.5"], "drop_path_rate: must be in [0, 1), got -0.5"),
        (["--scale", "-0.1,1"], "scale: must be in [0, 1]"),
        (["--batch_size", "-8"], "batch_size: must be >= 1"),
        (["--lr", "-1e-3"], "lr: must be >= 0"),
        (["--hflip", "1.5"], "hflip: must be in [0, 1]"),
        (["--label_smoothing", "1"], "label_smoothing: must be in [0, 1)"),
        (["--drop_path_rate", "-0.1"], "drop_path_rate: must be in [0, 1)"),
        (["--crop_pct", "0"], "crop_pct: must be in (0, 1]"),
        (["--std", "0.5,0,0.5"], "std: must be > 0"),
        (["--betas", "0.9,1.0"], "betas: must be in [0, 1)"),
        (["--scale", "1.0,0.08"], "scale: the lower bound comes first"),
        (["--export_batch_size", "0"], "export_batch_size: must be >= 1"),
        (["--warmup_start_factor", "1.5"], "warmup_start_factor: must be in [0, 1], got 1.5 from the command line"),
        (
            ["--weight_decay_params", "none"],
            "weight_decay_params: 'none' from the command line is not one of weights, all",
        ),
    ],
)
def test_values_out_of_range_name_key_and_source(args, message):
    with pytest.raises(ConfigError) as info:
        parse_config(args)
    assert message in str(info.value)


def test_out_of_range_value_in_a_recipe_section_names_the_section(tmp_path):
    path = write(tmp_path, "Ascend: {loss_scale_window: 0}\n")
    with pytest.raises(ConfigError, match=r"loss_scale_window: must be >= 1, got 0 from .*\(section Ascend\)"):
        parse_config(["--config", path])


def test_help_lists_every_key(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per key
    with pytest.raises(SystemExit) as info:
        parse_config(["--lr", "0.1", "--help"], required=("data_dir",))
    assert info.value.code == 0
    out = capsys.readouterr().out
    intro, options = out.split("  -h, --help")
    lines = {line.split()[0]: line for line in options.splitlines() if line.startswith("  --")}
    assert list(lines) == ["--config", *(f"--{key}" for key in DEFAULTS)]
    for key in DEFAULTS:
        line = lines[f"--{key}"]
        kind = line.split()[1]  # the type, as the metavar
        assert set(kind.strip("[]").split(",")) - {"..."} <= {"INT", "FLOAT", "STR", "BOOL", "MAPPING", "ITEM"}, line
        assert "default: " in line
        assert all(choice in line for choice in CHOICES.get(key, ())), line
        assert ("required" in line) == (key == "data_dir"), line
    assert lines["--lr"].split()[1:2] == ["FLOAT"] and "; >= 0; default: 0.1" in lines["--lr"]
    assert lines["--epochs"].split()[1:2] == ["INT"] and ">= 1; default: 100" in lines["--epochs"]
    assert lines["--distribute"].split()[1:2] == ["[BOOL]"] and "default: false" in lines["--distribute"]
    assert lines["--scale"].split()[1:2] == ["FLOAT,FLOAT"] and "in [0, 1]; default: [0.08, 1.0]" in lines["--scale"]
    assert lines["--opt"].split()[1:2] == ["STR"] and "one of sgd, adamw; default: sgd" in lines["--opt"]
    assert lines["--model_kwargs"].split()[1:2] == ["MAPPING"] and "default: {}" in lines["--model_kwargs"]
    assert 'default: ""' in lines["--data_dir"] and "default: null" in lines["--drop_path_rate"]
    assert "Precedence: defaults < the recipe" in out
    for example in ("--scale 0.08,1.0", '--model_kwargs "{layers: [1, 1, 1, 1]}"', "--shuffle=no", "--distribute"):
        assert example in intro, example
    with pytest.raises(SystemExit) as info:
        parse_config(["-h"])
    assert info.value.code == 0 and "--data_dir" in capsys.readouterr().out


def test_command_line_errors_raise_and_print_nothing(capsys):
    """argparse must not print its usage and exit: the entry points turn the ConfigError into one line, exit 2."""
    for argv in (["--lr"], ["--lrr", "1"], ["stray"], ["--help=x"], ["--epochs", "-1"]):
        with pytest.raises(ConfigError):
            parse_config(argv)
    assert capsys.readouterr() == ("", "")


def test_absent_flags_keep_the_recipe(tmp_path):
    # only the keys given on the command line override; bools too, though a bare flag means true
    path = write(tmp_path, "distribute: true\nshuffle: false\nfile_name: '007'\nlr: 0.3\n")
    cfg = parse_config(["--config", path, "--epochs", "2"])
    assert (cfg.distribute, cfg.shuffle, cfg.file_name, cfg.lr, cfg.epochs) == (True, False, "007", 0.3, 2)
    assert parse_config(["--config", path, "--shuffle"]).shuffle is True
    assert parse_config(["--config", path, "--distribute=no"]).distribute is False


def test_config_object():
    cfg = parse_config([])
    with pytest.raises(AttributeError, match="did you mean batch_size"):
        _ = cfg.batchsize
    cfg.epochs = "12"
    assert cfg.epochs == 12
    with pytest.raises(ConfigError, match="epochs"):
        cfg.epochs = "twelve"
    with pytest.raises(AttributeError):
        cfg.not_a_key = 1
    for clone in (copy.copy(cfg), copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):  # data workers pickle it
        assert clone == cfg and clone.epochs == 12
        clone.seed += 1  # a copy owns its values
        assert cfg.seed == DEFAULTS["seed"]
    with pytest.raises(ConfigError, match="missing"):
        Config({"lr": 0.1})


# ---- the recipes in config/ -------------------------------------------------------------------------------------


def test_recipes_exist_for_registered_models():
    from src.models import list_models

    names = {path.stem for path in RECIPES}
    missing = [m for m in list_models() if f"{m}_imagenet" not in names]
    assert not missing, f"registered models without an ImageNet recipe: {missing}"
    assert "demo_digits" in names


IMAGENET = [p for p in RECIPES if "_imagenet" in p.stem]


@pytest.mark.parametrize("path", IMAGENET, ids=[p.stem for p in IMAGENET])
def test_imagenet_recipe_preprocessing_is_its_models_config(path: Path):
    """The evaluation preprocessing of an ImageNet recipe is the one registered with its model (ModelConfig)."""
    from src.models import get_model_config

    cfg = parse_config(["--config", str(path)])
    mc = get_model_config(cfg.model)
    assert (cfg.in_chans, cfg.img_size, cfg.img_size) == mc.input_size
    assert (cfg.crop_pct, cfg.interpolation) == (mc.crop_pct, mc.interpolation)
    assert tuple(cfg.mean) == mc.mean and tuple(cfg.std) == mc.std


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_parses(path: Path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert path.read_text(encoding="utf-8").startswith("#"), "recipes start with a comment header"
    for device in DEVICE_SECTIONS:
        cfg = parse_config(["--config", str(path), "--device_target", device])
        assert cfg.device_target == device
        assert cfg.amp_level == raw.get(device, {}).get("amp_level", raw.get("amp_level", DEFAULTS["amp_level"]))
    assert isinstance(cfg.model, str) and cfg.model.startswith("acmix_")
    if path.stem != "demo_digits":
        name = f"{cfg.model}_{'imagenet' if cfg.dataset == 'imagefolder' else cfg.dataset}"
        assert path.stem in (name, f"{name}_official")
    # the convention of config/README.md: model, plus only what differs from the defaults
    same = [k for k, v in raw.items() if k != "model" and k not in DEVICE_SECTIONS and DEFAULTS[k] == v]
    assert not same, f"keys equal to their defaults: {same}"


# an _official variant builds the model of its base recipe (test_official_resnet_recipe_holds_the_official_script)
BUILT = [p for p in RECIPES if not p.stem.endswith("_official")]


@pytest.mark.parametrize("path", BUILT, ids=[p.stem for p in BUILT])
def test_recipe_model_builds(path: Path):
    # built as training builds it: num_classes, in_chans, drop_path_rate, img_size where the model takes it
    from src.models import create_model_from_config, is_model

    cfg = parse_config(["--config", str(path)])
    if not is_model(cfg.model):
        pytest.skip(f"{cfg.model} is not registered yet")
    net = create_model_from_config(cfg)
    assert net.num_classes == cfg.num_classes
    assert sum(p.size for p in net.trainable_params()) > 0


def test_official_resnet_recipe_holds_the_official_script():
    """The facts of LeapLabTHU/ACmix ResNet/main.py (line numbers in config/README.md), per device target."""
    path = CONFIG_DIR / "acmix_resnet50_imagenet_official.yaml"
    for device in DEVICE_SECTIONS:
        cfg = parse_config(["--config", str(path), "--device_target", device])
        assert (cfg.opt, cfg.momentum, cfg.nesterov, cfg.weight_decay, cfg.weight_decay_params) == (
            "sgd",
            0.9,
            False,
            1e-4,
            "all",
        )
        assert (cfg.lr, cfg.lr_base_batch, cfg.batch_size) == (0.1, 128, 128)
        assert (cfg.epochs, cfg.warmup_epochs, cfg.warmup_start_factor, cfg.min_lr) == (90, 5, 0.25, 0.0)
        assert (cfg.label_smoothing, cfg.amp_level, cfg.crop_pct, cfg.interpolation) == (0.1, "O0", 0.875, "bilinear")
        assert (cfg.mixup, cfg.cutmix, cfg.auto_augment, cfg.reprob, cfg.ema_decay, cfg.clip_grad) == (
            0,
            0,
            "",
            0,
            0,
            0,
        )
    # same model and data pipeline as the project's ResNet-50 recipe: only the training schedule differs
    ours = parse_config(["--config", str(CONFIG_DIR / "acmix_resnet50_imagenet.yaml")]).to_dict()
    official = parse_config(["--config", str(path)]).to_dict()
    changed = {key for key in ours if ours[key] != official[key]}
    assert changed == {"lr_base_batch", "weight_decay_params", "epochs", "warmup_start_factor", "min_lr"}


@pytest.mark.parametrize("model", ["acmix_pvt_tiny", "acmix_pvt_small"])
def test_pvt_recipes_use_the_model_default_drop_path(model: str):
    """One drop-path rate per PVT model: the ImageNet recipe's equals the model factory's default."""
    from src.models import create_model
    from src.models.layers.common import DropPath

    cfg = parse_config(["--config", str(CONFIG_DIR / f"{model}_imagenet.yaml")])
    # one block per stage: the last block's rate is the model's drop_path_rate (linear from 0)
    net = create_model(model, num_classes=10, depths=(1, 1, 1, 1))
    rates = [cell.drop_prob for _, cell in net.cells_and_names() if isinstance(cell, DropPath)]
    assert rates and max(rates) == pytest.approx(cfg.drop_path_rate)
