"""Export to MindIR / AIR / ONNX with verification, and running exported MindIR files like a model."""

from __future__ import annotations

import json
import os
import re
import time
from typing import Dict, Optional, Tuple

import numpy as np

from .config import Config
from .errors import ConfigError, ExportError

__all__ = [
    "ExportError",
    "export_model",
    "export_path",
    "load_mindir",
    "MindIRModel",
    "verify_export",
    "read_export_meta",
]

_EXT = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}


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


class MindIRModel:
    """An exported MindIR that evaluates like a model: batches smaller than the exported one are padded.

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
        self.batch = None

    def set_train(self, mode: bool = False) -> None:
        """Exported graphs are inference graphs; kept for the model interface."""

    def __call__(self, images):
        from mindspore import Tensor

        x = images.asnumpy() if hasattr(images, "asnumpy") else np.asarray(images)
        if self.batch is None:
            self.batch = self._exported_batch(x)
        n = x.shape[0]
        if n > self.batch:
            parts = [self(x[i : i + self.batch]).asnumpy() for i in range(0, n, self.batch)]
            return Tensor(np.concatenate(parts))
        if n < self.batch:
            x = np.concatenate([x, np.zeros((self.batch - n,) + x.shape[1:], x.dtype)])
        out = self.graph(Tensor(x)).asnumpy()
        return Tensor(out[:n])

    def _exported_batch(self, x: np.ndarray) -> int:
        # A graph fixes its input shape: export writes it to a sidecar file; the file name also carries it.
        meta = read_export_meta(self.path)
        if "input_shape" in meta:
            return int(meta["input_shape"][0])
        m = re.search(r"_(\d+)x\d+x\d+x\d+\.mindir$", self.path)
        if m:
            return int(m.group(1))
        return x.shape[0]


def read_export_meta(path: str) -> Dict[str, object]:
    """The sidecar ``<exported file>.json`` (model, input shape, class names), or {} if there is none.

    Args:
        path: exported file.
    """
    sidecar = path + ".json"
    if not os.path.isfile(sidecar):
        return {}
    with open(sidecar, encoding="utf-8") as f:
        return json.load(f)


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


def verify_export(net, path: str, file_format: str, sample: np.ndarray) -> Optional[Tuple[float, float]]:
    """(max |exported(sample) - net(sample)|, max |net(sample)|), or None where nothing here runs the format.

    Args:
        net: the model in eval mode.
        path: exported file.
        file_format: MINDIR, ONNX or AIR.
        sample: an input of the exported shape.
    """
    from mindspore import Tensor

    ref = net(Tensor(sample)).asnumpy()
    if file_format == "MINDIR":
        out = MindIRModel(path)(Tensor(sample)).asnumpy()
    elif file_format == "ONNX":
        try:
            import onnxruntime as ort
        except ImportError:
            return None
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        out = session.run(None, {session.get_inputs()[0].name: sample})[0]
    else:
        return None  # AIR is compiled by ATC for Ascend; nothing here runs it
    return float(np.abs(out.astype(np.float64) - ref).max()), float(np.abs(ref).max())


def export_model(cfg: Config, log=print) -> Dict[str, object]:
    """Build ``cfg.model``, load ``cfg.checkpoint`` strictly, export it, and (with ``verify``) check the file.

    Args:
        cfg: config with ``checkpoint``, ``file_format``, ``export_batch_size``, ``img_size``, ``file_name``,
            ``force``, ``verify``.
        log: where progress lines go.
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

    import mindspore as ms
    from mindspore import Tensor

    from .checkpoint import load_model_weights
    from .env import init_env
    from .models import create_model_from_config

    init_env(cfg.device_target, "graph", cfg.seed, graph_kernel=cfg.graph_kernel)
    net = create_model_from_config(cfg)
    load_model_weights(net, cfg.checkpoint)
    net.set_train(False)
    shape = (cfg.export_batch_size, cfg.in_chans, cfg.img_size, cfg.img_size)
    sample = np.random.default_rng(cfg.seed).standard_normal(shape).astype(np.float32)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    t0 = time.perf_counter()
    base = path[: -len(_EXT[cfg.file_format])]
    try:
        ms.export(net, Tensor(sample), file_name=base, file_format=cfg.file_format)
    except Exception as exc:  # MindSpore reports unsupported operators as RuntimeError/TypeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{cfg.model} cannot be exported to {cfg.file_format}: {first}") from exc
    if not os.path.isfile(path):
        raise ExportError(f"MindSpore reported success but wrote no {path}")
    result: Dict[str, object] = {
        "path": path,
        "format": cfg.file_format,
        "input_shape": shape,
        "seconds": time.perf_counter() - t0,
        "bytes": os.path.getsize(path),
    }
    meta = {
        "model": cfg.model,
        "input_shape": list(shape),
        "num_classes": cfg.num_classes,
        "checkpoint": cfg.checkpoint,
    }
    names = _class_names_near(cfg.checkpoint)
    if names is not None:
        meta["class_names"] = names
    with open(path + ".json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    log(f"exported {cfg.model} ({cfg.checkpoint}) to {path}: {result['bytes'] / 2**20:.1f} MiB, input {shape}")
    if cfg.verify:
        checked = verify_export(net, path, cfg.file_format, sample)
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
