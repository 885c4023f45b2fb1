"""Run logs: a console+file logger, a JSON-lines metrics log, and a PNG plot of the curves (matplotlib)."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Dict, List

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

    def truncate(self, step: int) -> None:
        """Drop the records written after ``step`` (a resumed run continues from its checkpoint's step), atomically.

        Args:
            step: the global step the run continues from (0: a new run).
        """
        if not os.path.exists(self.path):
            return
        keep = [r for r in self.read(self.path) if int(r.get("step", 0)) <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in keep)
        os.replace(tmp, self.path)

    @staticmethod
    def read(path: str) -> List[Dict]:
        """All records of a metrics log.

        Args:
            path: the ``.jsonl`` file.
        """
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def plot_curves(metrics_path: str, png_path: str) -> None:
    """Plot a run's metrics log: training loss and learning rate against the step, validation top-1/top-5 against
    the epoch, into a PNG (matplotlib's Agg backend, so it works without a display).

    Args:
        metrics_path: the run's ``metrics.jsonl``.
        png_path: output image.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless; also keeps a user's interactive backend from opening windows mid-run
    import matplotlib.pyplot as plt

    records = MetricsLog.read(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    steps = [r["step"] for r in train]
    ax_loss.plot(steps, [r["loss"] for r in train], color="tab:red", marker="." if len(train) < 60 else None)
    ax_loss.set(xlabel="step (optimizer updates)", ylabel="training loss (cross-entropy, nats)", title="training")
    ax_lr = ax_loss.twinx()
    ax_lr.plot(steps, [r["lr"] for r in train], color="tab:gray", linestyle="--")
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax_loss.legend(
        [ax_loss.lines[0], ax_lr.lines[0]] if train else [],
        ["loss (mean since last log point)", "learning rate"],
        loc="center right",
    )
    epochs = [r["epoch"] for r in val]
    for key, color in (("top1", "tab:blue"), ("top5", "tab:green")):
        ax_acc.plot(epochs, [r[key] for r in val], color=color, marker="o", label=key.replace("top", "top-"))
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation")
    ax_acc.xaxis.get_major_locator().set_params(integer=True)
    if val:
        ax_acc.legend()
    ax_loss.grid(alpha=0.3)
    ax_acc.grid(alpha=0.3)
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
