"""Export to MindIR / AIR / ONNX with verification, a self-describing sidecar JSON, and running MindIR files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .config import Config
from .errors import ConfigError, ExportError

__all__ = [
    "ExportError",
    "SIDECAR_SCHEMA_VERSION",
    "export_model",
    "export_network",
    "export_path",
    "sidecar_path",
    "describe_outputs",
    "build_sidecar",
    "load_mindir",
    "MindIRModel",
    "verify_export",
    "read_export_meta",
]

_EXT = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
# 1: input, preprocessing, output, checkpoint and producer sections (docs/export.md#the-sidecar-json)
SIDECAR_SCHEMA_VERSION = 1


def export_path(cfg: Config) -> str:
    """The output file: ``file_name`` with the format's extension, or ``<output_dir>/<model>_<B>x<C>x<S>x<S>``.

    Args:
        cfg: config with ``file_name``, ``output_dir``, ``model``, ``export_batch_size``, ``in_chans``,
            ``img_size``, ``file_format``.
    """
    ext = _EXT[cfg.file_format]
    if cfg.file_name:
        base = cfg.file_name[: -len(ext)] if cfg.file_name.lower().endswith(ext) else cfg.file_name
    else:
        shape = f"{cfg.export_batch_size}x{cfg.in_chans}x{cfg.img_size}x{cfg.img_size}"
        base = os.path.join(cfg.output_dir, f"{cfg.model}_{shape}")
    return base + ext


def sidecar_path(path: str) -> str:
    """The sidecar JSON of an exported file: ``<exported file>.json``.

    Args:
        path: exported file.
    """
    return path + ".json"


Outputs = Union[np.ndarray, Tuple[np.ndarray, ...]]


class MindIRModel:
    """An exported MindIR that evaluates like a model.

    A fixed-batch graph gets batches smaller than its own padded and larger ones split; a graph exported with a
    dynamic batch takes any batch as it is. Several outputs (a ``features_only`` model) come back as a tuple.

    Args:
        path: the ``.mindir`` file.
    """

    def __init__(self, path: str) -> None:
        import mindspore as ms
        from mindspore import nn

        if not os.path.isfile(path):
            raise ExportError(f"MindIR file not found: {path}")
        self.path = path
        self.graph = nn.GraphCell(ms.load(path))
        self.batch = self._exported_batch()

    def set_train(self, mode: bool = False) -> None:
        """Exported graphs are inference graphs; kept for the model interface."""

    def __call__(self, images):
        from mindspore import Tensor

        x = images.asnumpy() if hasattr(images, "asnumpy") else np.asarray(images)
        out = self._run(x)
        return tuple(Tensor(o) for o in out) if isinstance(out, tuple) else Tensor(out)

    def _run(self, x: np.ndarray) -> Outputs:
        n = x.shape[0]
        batch = self.batch or n
        if n > batch:
            parts = [self._run(x[i : i + batch]) for i in range(0, n, batch)]
            if isinstance(parts[0], tuple):
                return tuple(np.concatenate([p[j] for p in parts]) for j in range(len(parts[0])))
            return np.concatenate(parts)
        if n < batch:
            x = np.concatenate([x, np.zeros((batch - n,) + x.shape[1:], x.dtype)])
        from mindspore import Tensor

        out = self.graph(Tensor(x))
        if isinstance(out, (tuple, list)):
            return tuple(o.asnumpy()[:n] for o in out)
        return out.asnumpy()[:n]

    def _exported_batch(self) -> Optional[int]:
        """The graph's batch size, None for a dynamic batch: from the sidecar, else from the file name."""
        meta = read_export_meta(self.path)
        if "input" in meta:
            batch = int(meta["input"]["shape"][0])
            return None if batch < 0 else batch
        if "input_shape" in meta:  # sidecars written before schema version 1
            return int(meta["input_shape"][0])
        m = re.search(r"_(\d+)x\d+x\d+x\d+\.mindir$", self.path)
        return int(m.group(1)) if m else None


def read_export_meta(path: str) -> Dict[str, Any]:
    """The sidecar JSON of an exported file (see docs/export.md), or {} if there is none.

    Args:
        path: exported file.
    """
    sidecar = sidecar_path(path)
    if not os.path.isfile(sidecar):
        return {}
    with open(sidecar, encoding="utf-8") as f:
        meta = json.load(f)
    version = meta.get("schema_version", 0) if isinstance(meta, dict) else None
    if not isinstance(version, int) or version > SIDECAR_SCHEMA_VERSION:
        raise ExportError(
            f"{sidecar}: sidecar schema_version {version!r} is not one this code reads (<= {SIDECAR_SCHEMA_VERSION})"
        )
    return meta


def _class_names_near(checkpoint: str) -> Optional[list]:
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "class_names.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return list(json.load(f))


def load_mindir(path: str) -> MindIRModel:
    """An exported MindIR as a callable model.

    Args:
        path: ``.mindir`` file.
    """
    return MindIRModel(path)


def _as_arrays(out) -> Tuple[np.ndarray, ...]:
    items = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(o.asnumpy() if hasattr(o, "asnumpy") else np.asarray(o) for o in items)


def verify_export(
    net, path: str, file_format: str, sample: np.ndarray, ref: Optional[Outputs] = None
) -> Optional[Tuple[float, float]]:
    """(max |exported(sample) - net(sample)|, max |net(sample)|) over all outputs, or None where nothing here runs
    the format.

    Args:
        net: the model in eval mode.
        path: exported file.
        file_format: MINDIR, ONNX or AIR.
        sample: an input of the exported shape.
        ref: ``net(sample)`` when already computed.
    """
    from mindspore import Tensor

    expected = _as_arrays(net(Tensor(sample)) if ref is None else ref)
    if file_format == "MINDIR":
        got = _as_arrays(MindIRModel(path)(Tensor(sample)))
    elif file_format == "ONNX":
        try:
            import onnxruntime as ort
        except ImportError:
            return None
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = tuple(session.run(None, {session.get_inputs()[0].name: sample}))
    else:
        return None  # AIR is compiled by ATC for Ascend; nothing here runs it
    if len(got) != len(expected):
        raise ExportError(f"{path} has {len(got)} outputs, the model {len(expected)}")
    diff = max(float(np.abs(g.astype(np.float64) - e).max()) for g, e in zip(got, expected))
    return diff, max(float(np.abs(e).max()) for e in expected)


def export_network(
    net, path: str, sample: np.ndarray, file_format: str = "MINDIR", dynamic_batch: bool = False
) -> None:
    """``mindspore.export`` of ``net`` at the shape of ``sample`` to ``path``, with a clear error if it fails.

    Args:
        net: the model in eval mode; one output or a tuple of outputs.
        path: output file, with the format's extension.
        sample: an input of the shape to export.
        file_format: MINDIR, AIR or ONNX.
        dynamic_batch: leave the batch axis unknown (``Tensor(shape=[None, ...])``), so the file takes any batch.
    """
    import mindspore as ms
    from mindspore import Tensor

    if dynamic_batch:
        spec = Tensor(shape=[None, *sample.shape[1:]], dtype=ms.float32)
    else:
        spec = Tensor(sample)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        ms.export(net, spec, file_name=path[: -len(_EXT[file_format])], file_format=file_format)
    except Exception as exc:  # MindSpore reports unsupported operators as RuntimeError/TypeError/ValueError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        what = f"{file_format} with a dynamic batch" if dynamic_batch else file_format
        raise ExportError(f"{type(net).__name__} cannot be exported to {what}: {first}") from exc
    if not os.path.isfile(path):
        raise ExportError(f"MindSpore reported success but wrote no {path}")


def describe_outputs(
    outputs: Outputs, img_size: int, num_classes: int, class_names: Optional[Sequence[str]] = None, batch: int = 0
) -> Dict[str, Any]:
    """The ``output`` section of the sidecar, read from the outputs of the exported model on a sample.

    Args:
        outputs: the model's output(s) on an input of ``img_size``.
        img_size: input height and width, for the strides of feature maps.
        num_classes: classes of the head; 0 for a model without one.
        class_names: names of the classes, in class index order.
        batch: batch axis shown in the shapes (-1 for a dynamic batch); 0 keeps the sample's.
    """
    arrays = _as_arrays(outputs)

    def shape(a: np.ndarray) -> List[int]:
        return [batch or int(a.shape[0]), *(int(d) for d in a.shape[1:])]

    if len(arrays) > 1 or arrays[0].ndim == 4:
        maps = [
            {"index": i, "shape": shape(a), "channels": int(a.shape[1]), "stride": img_size // int(a.shape[2])}
            for i, a in enumerate(arrays)
        ]
        return {"kind": "feature_maps", "layout": "NCHW", "dtype": str(arrays[0].dtype), "maps": maps}
    (out,) = arrays
    if num_classes == 0:
        return {"kind": "pooled_features", "shape": shape(out), "dtype": str(out.dtype), "dim": int(out.shape[1])}
    desc: Dict[str, Any] = {
        "kind": "logits",
        "shape": shape(out),
        "dtype": str(out.dtype),
        "num_classes": int(out.shape[1]),
        "probabilities": "softmax over the last axis",
    }
    if class_names is not None:
        if len(class_names) != out.shape[1]:
            raise ExportError(f"{len(class_names)} class names for a model with {out.shape[1]} classes")
        desc["class_names"] = list(class_names)
    return desc


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _input_name(path: str, file_format: str) -> Optional[str]:
    """The name the exported file gives its input, where it can be read here."""
    try:
        if file_format == "MINDIR":
            from mindspore.train import mind_ir_pb2

            model = mind_ir_pb2.ModelProto()
            with open(path, "rb") as f:
                model.ParseFromString(f.read())
            return model.graph.input[0].name
        if file_format == "ONNX":
            import onnx

            return onnx.load(path, load_external_data=False).graph.input[0].name
    except Exception:  # the name is informative only; a reader that is missing or fails leaves it out
        return None
    return None


def _project_version() -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version("acmix-mindspore")
    except metadata.PackageNotFoundError:  # a checkout: the version line of pyproject.toml
        pyproject = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
        if os.path.isfile(pyproject):
            with open(pyproject, encoding="utf-8") as f:
                m = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
            return m.group(1) if m else None
        return None


def build_sidecar(
    cfg: Config, path: str, input_shape: Sequence[int], output: Dict[str, Any], dynamic_batch: bool = False
) -> Dict[str, Any]:
    """The sidecar JSON of an export: everything an application needs to feed the file and read its output.

    Args:
        cfg: the export run's config (model, checkpoint, file_format and the preprocessing keys).
        path: exported file.
        input_shape: the exported input shape (batch -1 when dynamic).
        output: the output section (:func:`describe_outputs`).
        dynamic_batch: the file takes any batch.
    """
    import mindspore as ms

    from .evaluator import eval_preprocessing

    return {
        "schema_version": SIDECAR_SCHEMA_VERSION,
        "model": cfg.model,
        "model_kwargs": dict(cfg.model_kwargs),
        "format": cfg.file_format,
        "file": os.path.basename(path),
        "checkpoint": {"path": cfg.checkpoint, "sha256": _sha256(cfg.checkpoint)},
        "input": {
            "name": _input_name(path, cfg.file_format),
            "shape": [int(d) for d in input_shape],
            "dtype": "float32",
            "layout": "NCHW",
            "dynamic_batch": bool(dynamic_batch),
        },
        "preprocessing": eval_preprocessing(cfg),
        "output": output,
        "producer": {"project": "acmix-mindspore", "version": _project_version(), "mindspore": ms.__version__},
    }


def _head(cfg: Config) -> Tuple[int, bool]:
    """(classes of the built model, features_only): ``model_kwargs`` override ``num_classes`` as in the registry."""
    kwargs = dict(cfg.model_kwargs)
    features_only = bool(kwargs.get("features_only", False))
    return (0 if features_only else int(kwargs.get("num_classes", cfg.num_classes))), features_only


def export_model(cfg: Config, log=print, dynamic_batch: bool = False) -> Dict[str, object]:
    """Build ``cfg.model``, load ``cfg.checkpoint`` strictly, export it with its sidecar, and (``verify``) check it.

    A model without a classifier (``model_kwargs`` ``num_classes: 0`` or ``features_only: true``) loads a
    classification checkpoint without its head.

    Args:
        cfg: config with ``checkpoint``, ``file_format``, ``export_batch_size``, ``img_size``, ``file_name``,
            ``force``, ``verify`` and the preprocessing keys recorded in the sidecar.
        log: where progress lines go.
        dynamic_batch: export with an unknown batch axis (no ACmix model supports it in MindSpore 2.8; see
            docs/export.md).
    """
    if cfg.file_format == "AIR" and cfg.device_target != "Ascend":
        raise ExportError(
            f"AIR export needs the Ascend backend (MindSpore compiles AIR through CANN); device_target is "
            f"{cfg.device_target}. Export MINDIR here, or run on an Ascend host with --device_target Ascend."
        )
    path = export_path(cfg)
    if os.path.exists(path) and not cfg.force:
        raise ExportError(f"{path} exists; pass --force to overwrite it")
    if not cfg.checkpoint:
        raise ConfigError("export needs --checkpoint (a .ckpt of this model)")

    from mindspore import Tensor

    from .checkpoint import load_model_weights
    from .env import init_env
    from .models import create_model_from_config, get_model_config

    init_env(cfg.device_target, "graph", cfg.seed, graph_kernel=cfg.graph_kernel)
    num_classes, _ = _head(cfg)
    net = create_model_from_config(cfg)
    skip = (get_model_config(cfg.model).classifier + ".",) if num_classes == 0 else ()
    load_model_weights(net, cfg.checkpoint, skip_prefixes=skip)
    net.set_train(False)
    shape = (cfg.export_batch_size, cfg.in_chans, cfg.img_size, cfg.img_size)
    sample = np.random.default_rng(cfg.seed).standard_normal(shape).astype(np.float32)
    t0 = time.perf_counter()
    try:
        export_network(net, path, sample, cfg.file_format, dynamic_batch)
    except ExportError as exc:
        raise ExportError(str(exc).replace(type(net).__name__, cfg.model, 1)) from exc.__cause__
    seconds = time.perf_counter() - t0
    ref = net(Tensor(sample))
    names = _class_names_near(cfg.checkpoint) if num_classes else None
    output = describe_outputs(ref, cfg.img_size, num_classes, names, batch=-1 if dynamic_batch else 0)
    exported_shape = (-1 if dynamic_batch else shape[0],) + shape[1:]
    meta = build_sidecar(cfg, path, exported_shape, output, dynamic_batch)
    with open(sidecar_path(path), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    result: Dict[str, object] = {
        "path": path,
        "format": cfg.file_format,
        "input_shape": exported_shape,
        "seconds": seconds,
        "bytes": os.path.getsize(path),
        "sidecar": sidecar_path(path),
    }
    log(
        f"exported {cfg.model} ({cfg.checkpoint}) to {path}: {result['bytes'] / 2**20:.1f} MiB, "
        f"input {exported_shape}, output {output['kind']}; sidecar {result['sidecar']}"
    )
    if cfg.verify:
        checked = verify_export(net, path, cfg.file_format, sample, ref)
        if checked is None:
            result["max_abs_diff"] = None
            log(f"verification skipped: nothing on this machine runs {cfg.file_format} files")
        else:
            diff, scale = checked
            # the project's parity rule: 1e-4 for outputs up to 1, relative beyond
            tol = 1e-4 * max(1.0, scale)
            result.update(max_abs_diff=diff, output_scale=scale, tolerance=tol)
            log(
                f"verification: max |exported - checkpoint| = {diff:.3e} (outputs up to {scale:.3g}, "
                f"tolerance {tol:.1e}) on a random input of shape {shape}"
            )
            if diff > tol:
                raise ExportError(f"exported {path} differs from the checkpoint by {diff:.3e} (> {tol:.1e})")
    return result
