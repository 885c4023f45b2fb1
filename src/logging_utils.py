"""Run logs: a console+file logger, a JSON-lines metrics log, and a PNG plot of the curves (Pillow only)."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Dict, List, Sequence, Tuple

__all__ = ["get_logger", "MetricsLog", "plot_curves", "format_seconds"]


def get_logger(name: str, log_file: str = "", rank_id: int = 0) -> logging.Logger:
    """A logger writing ``time [rank] message`` to stdout and, if given, to ``log_file``.

    Args:
        name: logger name.
        log_file: path of the log file ("" for console only).
        rank_id: shown in every line, so merged logs of several ranks stay readable.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
    fmt = logging.Formatter(f"%(asctime)s [rank {rank_id}] %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: List[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    return logger


def format_seconds(seconds: float) -> str:
    """``1:02:03`` style duration.

    Args:
        seconds: duration.
    """
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class MetricsLog:
    """Appends one JSON object per line (``{"kind": "train" | "val", ...}``) and flushes each line.

    Args:
        path: the ``.jsonl`` file; appended to, so a resumed run continues the same log.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(self, record: Dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    @staticmethod
    def read(path: str) -> List[Dict]:
        """All records of a metrics log.

        Args:
            path: the ``.jsonl`` file.
        """
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def _panel(draw, box: Tuple[int, int, int, int], title: str, series: Sequence[Tuple[str, List, List, tuple]]):
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0 + 6, y0 - 16), title, fill=(0, 0, 0))
    xs = [x for _, sx, _, _ in series for x in sx]
    ys = [y for _, _, sy, _ in series for y in sy]
    if not xs:
        return
    xmin, xmax = min(xs), max(xs)
    ymin, ymax = min(ys), max(ys)
    if xmax == xmin:
        xmax = xmin + 1
    if ymax == ymin:
        ymax = ymin + 1
    pad = 8

    def to_px(x, y):
        px = x0 + pad + (x - xmin) / (xmax - xmin) * (x1 - x0 - 2 * pad)
        py = y1 - pad - (y - ymin) / (ymax - ymin) * (y1 - y0 - 2 * pad)
        return px, py

    draw.text((x0 + 4, y0 + 2), f"{ymax:.4g}", fill=(90, 90, 90))
    draw.text((x0 + 4, y1 - 14), f"{ymin:.4g}", fill=(90, 90, 90))
    draw.text((x1 - 60, y1 + 4), f"epoch {xmax:.3g}", fill=(90, 90, 90))
    for i, (label, sx, sy, color) in enumerate(series):
        pts = [to_px(x, y) for x, y in zip(sx, sy)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for px, py in pts if len(pts) < 60 else []:
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=color)
        draw.text((x1 - 110, y0 + 4 + 14 * i), label, fill=color)


def plot_curves(metrics_path: str, png_path: str) -> None:
    """Draw training loss and validation top-1/top-5 against epochs from a metrics log into a PNG.

    Args:
        metrics_path: the run's ``metrics.jsonl``.
        png_path: output image.
    """
    from PIL import Image, ImageDraw

    records = MetricsLog.read(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    img = Image.new("RGB", (900, 380), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    _panel(
        draw,
        (20, 30, 440, 350),
        "training loss",
        [("loss", [r["epoch_float"] for r in train], [r["loss"] for r in train], (200, 40, 40))],
    )
    _panel(
        draw,
        (470, 30, 890, 350),
        "validation accuracy (%)",
        [
            ("top-1", [r["epoch"] for r in val], [r["top1"] for r in val], (30, 90, 200)),
            ("top-5", [r["epoch"] for r in val], [r["top5"] for r in val], (40, 160, 60)),
        ],
    )
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    img.save(png_path)
