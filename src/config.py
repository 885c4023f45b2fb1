"""The project's only argument parser: defaults < YAML recipe < its device section < command line.

``train.py``, ``eval.py`` and ``export.py`` all call :func:`parse_config`. Every key is a command-line flag
(``--lr 0.05``, ``--lr=0.05``; argparse, generated from ``_SCHEMA``) and a YAML key; an unknown key anywhere is an
error, never silently ignored.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import functools
import json
import os
import re
import sys
import tempfile
from typing import Any, Callable, Dict, List, Mapping, NoReturn, Optional, Sequence, Tuple

import yaml

from .errors import ConfigError

__all__ = [
    "DEFAULTS",
    "CHOICES",
    "DEVICE_SECTIONS",
    "Config",
    "ConfigError",
    "parse_config",
    "save_config",
    "load_config",
]

# (key, default, meaning): the single source of DEFAULTS and of the --help text.
_SCHEMA: List[Tuple[str, Any, str]] = [
    ("model", "acmix_resnet26", "registry name"),
    ("num_classes", 1000, ""),
    ("img_size", 224, ""),
    ("in_chans", 3, ""),
    ("drop_path_rate", None, "null = model default"),
    ("model_kwargs", {}, "extra create_model keywords, e.g. {layers: [1, 1, 1, 1]}"),
    ("pretrained", "", "checkpoint to initialise weights from"),
    ("dataset", "imagefolder", ""),
    ("data_dir", "", ""),
    ("train_split", "train", ""),
    ("val_split", "val", ""),
    ("num_workers", 4, ""),
    ("batch_size", 128, "per device"),
    ("eval_batch_size", 0, "0 = batch_size"),
    ("shuffle", True, "shuffle the training set every epoch (off: file order, for reproducing runs exactly)"),
    ("train_crop", "random_resized", "random_crop pads by crop_padding, then crops"),
    ("crop_padding", 4, ""),
    ("scale", [0.08, 1.0], ""),
    ("ratio", [0.75, 1.3333333], ""),
    ("hflip", 0.5, ""),
    ("color_jitter", 0.0, ""),
    ("auto_augment", "", 'e.g. "rand-m9-mstd0.5-inc1"'),
    ("reprob", 0.0, "random erasing probability"),
    ("mixup", 0.0, ""),
    ("cutmix", 0.0, ""),
    ("mixup_prob", 1.0, ""),
    ("mixup_switch_prob", 0.5, ""),
    ("interpolation", "bilinear", ""),
    ("crop_pct", 0.875, ""),
    ("mean", [0.485, 0.456, 0.406], ""),
    ("std", [0.229, 0.224, 0.225], ""),
    ("opt", "sgd", ""),
    ("lr", 0.1, "for a global batch of lr_base_batch"),
    ("lr_base_batch", 256, "lr scales linearly with the global batch; 0 = no scaling"),
    ("momentum", 0.9, ""),
    ("nesterov", False, ""),
    ("betas", [0.9, 0.999], ""),
    ("eps", 1.0e-8, ""),
    ("weight_decay", 1.0e-4, ""),
    (
        "weight_decay_params",
        "weights",
        "weights: kernels and matrices only (norms, biases, ACmix rates, position tables, class token exempt);"
        " all: every trainable parameter, as the official ACmix-ResNet script",
    ),
    ("epochs", 100, ""),
    ("warmup_epochs", 5, ""),
    ("warmup_lr", 1.0e-6, "learning rate of the first step"),
    (
        "warmup_start_factor",
        None,
        "null = the warmup starts at warmup_lr; a number: at this fraction of the (batch-scaled) lr, warmup_lr unused",
    ),
    ("min_lr", 1.0e-5, ""),
    ("label_smoothing", 0.1, ""),
    ("clip_grad", 0.0, "global-norm clipping; 0 = off"),
    ("ema_decay", 0.0, "0 = no EMA"),
    ("amp_level", "O0", ""),
    ("loss_scale_type", "dynamic", ""),
    ("loss_scale", 65536.0, ""),
    ("loss_scale_window", 2000, ""),
    ("device_target", "CPU", "also selects the recipe's device section"),
    ("mode", "graph", ""),
    ("graph_kernel", "auto", "operator fusion: auto = on for CPU in graph mode, training included (see src/env.py)"),
    ("dataset_sink_mode", "auto", "feed batches through the device queue: auto = on for Ascend and GPU, off on CPU"),
    (
        "sink_size",
        0,
        "steps per sink (a log point each); 0 = the largest divisor of an epoch up to log_interval",
    ),
    ("seed", 42, ""),
    ("output_dir", "outputs/run", ""),
    ("log_interval", 20, ""),
    ("keep_checkpoints", 3, ""),
    ("save_interval", 1, "epochs"),
    ("eval_interval", 1, "epochs"),
    ("steps_per_epoch", 0, "0 = the whole split; >0 truncates (smoke tests)"),
    ("resume", "", 'checkpoint path or "auto"'),
    ("distribute", False, ""),
    ("checkpoint", "", "eval.py / export.py input"),
    ("file_format", "MINDIR", "export format"),
    ("export_batch_size", 1, ""),
    ("file_name", "", "export output; empty = <output_dir>/<model>_<B>x<C>x<S>x<S>.<ext>"),
    (
        "force",
        False,
        "train: start over in an output_dir that holds a run (removes its checkpoints, metrics, plot"
        " and log); export: overwrite the output file",
    ),
    ("verify", True, "export: reload the exported file and compare its output with the checkpoint's"),
    ("predict", [], "eval.py: classify these image files or folders instead of evaluating a split"),
]
DEFAULTS: Dict[str, Any] = {key: default for key, default, _ in _SCHEMA}
_HELP: Dict[str, str] = {key: meaning for key, _, meaning in _SCHEMA}

CHOICES: Dict[str, Tuple[str, ...]] = {
    "dataset": ("imagefolder", "cifar10"),
    "train_crop": ("random_resized", "random_crop", "none"),
    "interpolation": ("bilinear", "bicubic"),
    "opt": ("sgd", "adamw"),
    "weight_decay_params": ("weights", "all"),
    "amp_level": ("O0", "O1", "O2", "O3"),
    "loss_scale_type": ("dynamic", "fixed", "none"),
    "device_target": ("CPU", "GPU", "Ascend"),
    "mode": ("graph", "pynative"),
    "graph_kernel": ("auto", "on", "off"),
    "dataset_sink_mode": ("auto", "on", "off"),
    "file_format": ("MINDIR", "AIR", "ONNX"),
}
DEVICE_SECTIONS: Tuple[str, ...] = ("Ascend", "GPU", "CPU")
# Keys whose default is None but whose set values have a type anyway.
_OPTIONAL_TYPES: Dict[str, type] = {"drop_path_rate": float, "warmup_start_factor": float}
_LIST_LENGTHS: Dict[str, int] = {"scale": 2, "ratio": 2, "betas": 2}
# The values a number may take (every item of a list of numbers); checked wherever a value comes from, so a bad
# one stops the command before any work with the key and its source named.
_RULES: Dict[str, Callable[[float], bool]] = {
    ">= 0": lambda x: x >= 0,
    ">= 1": lambda x: x >= 1,
    "> 0": lambda x: x > 0,
    "in [0, 1]": lambda x: 0 <= x <= 1,
    "in [0, 1)": lambda x: 0 <= x < 1,
    "in (0, 1]": lambda x: 0 < x <= 1,
}
_RANGES: Dict[str, str] = {
    **dict.fromkeys(("num_classes", "img_size", "in_chans", "num_workers", "batch_size", "epochs"), ">= 1"),
    **dict.fromkeys(("loss_scale_window", "log_interval", "save_interval", "eval_interval"), ">= 1"),
    **dict.fromkeys(("keep_checkpoints", "export_batch_size"), ">= 1"),
    **dict.fromkeys(("eval_batch_size", "crop_padding", "color_jitter", "mixup", "cutmix", "lr"), ">= 0"),
    **dict.fromkeys(("lr_base_batch", "weight_decay", "warmup_epochs", "warmup_lr", "min_lr"), ">= 0"),
    **dict.fromkeys(("clip_grad", "seed", "steps_per_epoch", "sink_size"), ">= 0"),
    **dict.fromkeys(("ratio", "std", "eps", "loss_scale"), "> 0"),
    **dict.fromkeys(("hflip", "reprob", "mixup_prob", "mixup_switch_prob", "momentum", "scale"), "in [0, 1]"),
    **dict.fromkeys(("drop_path_rate", "label_smoothing", "ema_decay", "betas"), "in [0, 1)"),
    "crop_pct": "in (0, 1]",
    "warmup_start_factor": "in [0, 1]",
}
_CLI = "the command line"


def _close(key: str, extra: Sequence[str] = ()) -> str:
    close = difflib.get_close_matches(key, [*DEFAULTS, *extra], n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _unknown(key: str, source: str, extra: Sequence[str] = ()) -> ConfigError:
    return ConfigError(f"unknown key {key!r} from {source}{_close(key, extra)} (--help lists all keys)")


def _to_scalar(key: str, value: Any, kind: type, source: str) -> Any:
    """``value`` as ``kind`` (bool, int, float or str), or ConfigError."""
    bad = ConfigError(f"{key}: expected {kind.__name__}, got {value!r} from {source}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in ("true", "yes", "1"):
            return True
        if word in ("false", "no", "0"):
            return False
        raise bad
    if kind is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise bad
    try:
        # PyYAML reads "5e-4" (no dot) as a string, so numbers also come from strings.
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        raise bad from None
    if kind is float:
        return float(number)
    if float(number).is_integer():
        return int(number)
    raise bad


def _in_range(key: str, value: Any, source: str) -> Any:
    """``value`` if every number in it obeys ``_RANGES[key]``, else ConfigError."""
    rule = _RANGES.get(key)
    items = value if isinstance(value, list) else [value]
    if rule and any(item is not None and not _RULES[rule](item) for item in items):
        raise ConfigError(f"{key}: must be {rule}, got {value!r} from {source}")
    return value


def _coerce(key: str, value: Any, source: str) -> Any:
    """``value`` converted to the type of ``DEFAULTS[key]`` and checked against its range; enumerations are matched
    case-insensitively."""
    return _in_range(key, _convert(key, value, source), source)


def _convert(key: str, value: Any, source: str) -> Any:
    default = DEFAULTS[key]
    if default is None:
        kind = _OPTIONAL_TYPES.get(key)
        return value if value is None or kind is None else _to_scalar(key, value, kind, source)
    if isinstance(default, list):
        if isinstance(value, str):  # --scale 0.08,1.0
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if not default:
            return list(value)
        return [_to_scalar(key, item, type(default[0]), source) for item in value]
    if isinstance(default, dict):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping like {{layers: [1, 1, 1, 1]}}, got {value!r} from {source}")
        return dict(value)
    value = _to_scalar(key, value, type(default), source)
    if key in CHOICES:
        match = [c for c in CHOICES[key] if c.lower() == value.lower()]
        if not match:
            raise ConfigError(f"{key}: {value!r} from {source} is not one of {', '.join(CHOICES[key])}")
        value = match[0]
    return value


def _validated(updates: Mapping[str, Any], source: str, extra: Sequence[str] = ()) -> Dict[str, Any]:
    """``updates`` with every key checked and every value coerced; ``extra``: more names to suggest."""
    for key in updates:
        if key not in DEFAULTS:
            raise _unknown(str(key), source, extra)
    return {key: _coerce(key, value, source) for key, value in updates.items()}


def _read_yaml(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys to values, got {type(data).__name__}")
    return data


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises ConfigError instead of printing its usage and exiting, so the entry points
    report a bad command line like any other bad value: one ``error:`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} on {_CLI}")


_DESCRIPTION = """\
Precedence: defaults < the recipe (--config) < its Ascend:/GPU:/CPU: section
matching the final device_target < the command line.

Values: --key value or --key=value, read as YAML (string keys keep the text):
  --lr 5e-4   --epochs=3   --scale 0.08,1.0   --scale "[0.08, 1.0]"
  --model_kwargs "{layers: [1, 1, 1, 1]}"   --file_name 007 (stays a string)
  --distribute (a bare bool flag is true)   --shuffle false   --shuffle=no
  --mean -0.5,0,0.5 (a value may start with "-")
Choices match in any case."""


def _metavar(key: str) -> str:
    """The type of ``key`` as --help shows it: INT, FLOAT, STR, BOOL, FLOAT,FLOAT (two numbers), MAPPING, ..."""
    default = DEFAULTS[key]
    if isinstance(default, dict):
        return "MAPPING"
    if isinstance(default, list):
        if not default:
            return "ITEM,..."
        item = type(default[0]).__name__.upper()
        return ",".join([item] * _LIST_LENGTHS[key]) if key in _LIST_LENGTHS else f"{item},..."
    kind = _OPTIONAL_TYPES.get(key) if default is None else type(default)
    return kind.__name__.upper() if kind else "VALUE"


def _shown(value: Any) -> str:
    # JSON is YAML, so a default reads as it would be typed; only the empty string needs quotes to be seen
    return (value or '""') if isinstance(value, str) else json.dumps(value)


def _key_help(key: str, required: Sequence[str]) -> str:
    notes = ["required"] if key in required else []
    notes += [_HELP[key]] if _HELP[key] else []
    if key in CHOICES:
        notes.append(f"one of {', '.join(CHOICES[key])}")
    if key in _RANGES:
        notes.append(_RANGES[key])
    notes.append(f"default: {_shown(DEFAULTS[key])}")
    return "; ".join(notes).replace("%", "%%")  # argparse %-formats help texts


def _from_text(text: str) -> Any:
    """A command-line value read as YAML; text that is not valid YAML stays text, so that ``_coerce`` rejects it
    with the key and the source named (argparse would turn a failing type function into its own message)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _cli_parser(required: Sequence[str]) -> _Parser:
    """The command line generated from the schema: one ``--key`` per key of :data:`DEFAULTS`, plus ``--config``."""
    parser = _Parser(
        usage="%(prog)s [-h] [--config RECIPE.yaml] [--key value | --key=value ...]",
        description=_DESCRIPTION,
        formatter_class=functools.partial(argparse.RawDescriptionHelpFormatter, max_help_position=32),
        argument_default=argparse.SUPPRESS,  # a flag that is not given must not override the recipe
        allow_abbrev=False,  # --epoch is a typo to report, not --epochs
        exit_on_error=False,  # raise ArgumentError, which still knows the flag, instead of calling error()
    )
    # argparse takes a token that starts with "-" for an option unless it looks like "-1" or "-.5", so "--lr -1e-3",
    # "--mean -0.5,0,0.5" or "--file_name -x" would lack their value. Its negative-number pattern is the one way to
    # say what is a value; every option but -h starts with "--", so a token with a single "-" is one. Replaced only
    # once -h exists: an option that matched it would make argparse stop reading such tokens as values.
    parser._negative_number_matcher = re.compile(r"-[^-].*", re.DOTALL)
    parser.add_argument("--config", metavar="RECIPE.yaml", help="YAML recipe of keys below and device sections")
    for key, default in DEFAULTS.items():
        kind = str if isinstance(default, str) else _from_text  # str keys keep "007" or "1e3" as typed
        extra: Dict[str, Any] = {"nargs": "?", "const": True} if isinstance(default, bool) else {}
        parser.add_argument(f"--{key}", metavar=_metavar(key), type=kind, help=_key_help(key, required), **extra)
    return parser


def _parse_cli(argv: Sequence[str], required: Sequence[str]) -> Dict[str, Any]:
    """The keys given in ``argv`` (and ``config``), their values read but not yet coerced."""
    parser = _cli_parser(required)
    try:
        given, rest = parser.parse_known_args(argv)
    except argparse.ArgumentError as err:
        flag = err.argument_name or ""
        key = flag[2:]
        # the type functions never fail and argparse checks no choices here, so all it can object to on a flag that
        # takes a value is a missing value
        if key == "config" or (key in DEFAULTS and not isinstance(DEFAULTS[key], bool)):
            raise ConfigError(f"{flag} needs a value on {_CLI}") from None
        raise ConfigError(f"{flag + ': ' if flag else ''}{err.message} on {_CLI}") from None
    if rest:
        key = rest[0][2:].partition("=")[0] if rest[0].startswith("--") else ""
        if key:
            raise _unknown(key, _CLI)
        raise ConfigError(f"unexpected argument {rest[0]!r} on {_CLI}; flags look like --key value")
    return vars(given)


def _check(values: Dict[str, Any], required: Sequence[str]) -> None:
    for key, length in _LIST_LENGTHS.items():
        if len(values[key]) != length:
            raise ConfigError(f"{key}: expected {length} numbers, got {values[key]}")
    for key in ("scale", "ratio"):
        if values[key][0] > values[key][1]:
            raise ConfigError(f"{key}: the lower bound comes first, got {values[key]}")
    for key in ("mean", "std"):
        if len(values[key]) != values["in_chans"]:
            raise ConfigError(f"{key}: expected in_chans={values['in_chans']} numbers, got {values[key]}")
    for key in required:
        if key not in DEFAULTS:
            raise _unknown(key, "the required keys")
        if values[key] is None or values[key] in ("", [], {}):
            raise ConfigError(f"--{key} is required (on {_CLI} or in the recipe)")


class Config:
    """The resolved configuration: ``cfg.lr``, ``cfg.to_dict()``; setting a key re-validates its value.

    Args:
        values: a complete mapping of every key in :data:`DEFAULTS` (as :func:`parse_config` builds it).
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        missing = set(DEFAULTS) - set(values)
        extra = set(values) - set(DEFAULTS)
        if missing or extra:
            raise ConfigError(f"Config needs the DEFAULTS keys; missing {sorted(missing)}, extra {sorted(extra)}")
        self.__dict__["_values"] = copy.deepcopy(dict(values))

    def __getattr__(self, name: str) -> Any:
        # dunder and private look-ups (copy, pickle) must fail plainly, before _values exists
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._values:
            raise AttributeError(f"Config has no key {name!r}{_close(name)}")
        return self._values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in DEFAULTS:
            raise AttributeError(f"Config has no key {name!r}{_close(name)}")
        self._values[name] = _coerce(name, value, "attribute assignment")

    def __copy__(self) -> Config:
        # a copy owns its values: setting a key on it must not change the original
        return Config(self._values)

    def __deepcopy__(self, memo: Dict[int, Any]) -> Config:
        return Config(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._values == other._values

    def __repr__(self) -> str:
        return f"Config({self._values!r})"

    def to_dict(self) -> Dict[str, Any]:
        """A deep copy of all keys and values, in schema order."""
        return copy.deepcopy(self._values)


def parse_config(argv: Optional[Sequence[str]] = None, required: Sequence[str] = ()) -> Config:
    """Resolve the configuration from defaults, ``--config RECIPE.yaml``, its device section and the command line.

    Args:
        argv: command-line arguments without the program name; ``None`` reads ``sys.argv[1:]``.
        required: keys that must end up non-empty (e.g. ``("data_dir",)`` for training).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = _parse_cli(argv, required)  # -h / --help prints the usage and raises SystemExit(0) here
    recipe_path = cli.pop("config", None)
    if recipe_path is not None and not recipe_path:
        raise ConfigError(f"--config needs a recipe path on {_CLI}")
    cli = _validated(cli, _CLI)

    values = copy.deepcopy(DEFAULTS)
    sections: Dict[str, Dict[str, Any]] = {}
    if recipe_path is not None:
        recipe = _read_yaml(recipe_path)
        raw_sections = {name: recipe.pop(name) for name in DEVICE_SECTIONS if name in recipe}
        values.update(_validated(recipe, recipe_path, DEVICE_SECTIONS))
        # every section is checked, not only the active one, so a CPU run catches a broken Ascend section
        for name, section in raw_sections.items():
            where = f"{recipe_path} (section {name})"
            if not isinstance(section, dict):
                raise ConfigError(f"{where}: a device section must be a mapping, got {section!r}")
            if "device_target" in section:
                raise ConfigError(f"{where}: device_target cannot be set inside a device section")
            sections[name] = _validated(section, where)
    values.update(sections.get(cli.get("device_target", values["device_target"]), {}))
    values.update(cli)
    _check(values, required)
    return Config(values)


def save_config(cfg: Config, path: str) -> None:
    """Write the resolved configuration as a flat YAML recipe, atomically (temporary file, then rename).

    Args:
        cfg: configuration to save.
        path: destination file; its folder is created if needed.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    values = cfg.to_dict()
    values["force"] = False  # a one-shot order: rerunning a saved recipe must never delete a run or a file
    text = "# resolved configuration (src/config.py); rerun with --config this_file\n"
    text += yaml.safe_dump(values, sort_keys=False, default_flow_style=None, width=1000)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".yaml.tmp", dir=folder)
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the record from other users of the run folder
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_config(path: str) -> Config:
    """Read a configuration saved by :func:`save_config` (or any recipe) on top of the defaults.

    Args:
        path: YAML file.
    """
    return parse_config(["--config", path])
