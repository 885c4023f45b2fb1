"""The training loop's sink path, exercised on CPU.

MindSpore sinks data only on Ascend and GPU, so here ``mindspore.data_sink`` is replaced by a stand-in with its
documented contract (``data_sink(fn, dataset, sink_size, jit_config)`` returns a callable that runs ``fn`` on the
next ``sink_size`` batches of the looped dataset and returns the last output).  What this checks is ours: chunking
at sink boundaries, one read of the loss meter per sink, epoch-boundary checkpoints and resume; what only an
accelerator runs is listed in docs/accelerators.md and checked by scripts/run_smoke_test.sh there.
"""

from __future__ import annotations

import os

import mindspore as ms
import numpy as np
import pytest

from src.config import ConfigError
from src.logging_utils import MetricsLog
from src.trainer import ThroughputMeter, sink_enabled, sink_steps
from tests.conftest import TINY


def test_sink_only_on_accelerators():
    assert sink_enabled("auto", "Ascend") and sink_enabled("on", "GPU")
    assert not sink_enabled("auto", "CPU") and not sink_enabled("on", "CPU") and not sink_enabled("off", "Ascend")


def test_sink_size_divides_the_epoch():
    assert sink_steps(44, 0, 10) == 4  # the largest divisor of 44 up to 10
    assert sink_steps(40, 0, 10) == 10 and sink_steps(7, 0, 20) == 7 and sink_steps(13, 0, 5) == 1
    assert sink_steps(44, 11, 10) == 11
    with pytest.raises(ConfigError, match="does not divide"):
        sink_steps(44, 10, 10)


def test_throughput_leaves_out_the_compiling_chunk(monkeypatch):
    # a 30 s (compiling) chunk, a 2 s chunk, 50 s of validation, then a 2 s chunk of the next epoch
    clock = iter([0.0, 30.0, 32.0, 82.0, 84.0])
    monkeypatch.setattr("src.trainer.time.perf_counter", lambda: next(clock))
    meter = ThroughputMeter(images_per_step=8)
    meter.lap(4)
    assert np.isnan(meter.images_per_sec)
    meter.lap(4)
    meter.start()  # the next epoch starts after validation
    meter.lap(4)
    assert meter.images_per_sec == pytest.approx(8 * 8 / 4.0)
    assert meter.seconds_left(10) == pytest.approx(10 * 0.5)


def _stand_in_data_sink(calls):
    def data_sink(fn, dataset, sink_size=1, jit_config=None, input_signature=None):
        batches = dataset.create_tuple_iterator(num_epochs=-1)  # the device queue loops over the data set

        def next_batch():
            try:
                return next(batches)
            except StopIteration:  # the end of one pass; the iterator starts the next on the following call
                return next(batches)

        def sink_process():
            calls.append(sink_size)
            out = None
            for _ in range(sink_size):
                out = fn(*next_batch())
            return out

        return sink_process

    return data_sink


def _train(stripes, out, *extra):
    from src.config import parse_config
    from src.trainer import train

    args = [*TINY, "--data_dir", stripes, "--output_dir", str(out), "--epochs", "2", "--log_interval", "2", *extra]
    return train(parse_config(args))


def _records(out, kind="train"):
    return [r for r in MetricsLog.read(os.path.join(out, "metrics.jsonl")) if r["kind"] == kind]


@pytest.mark.slow
def test_sink_path_trains_like_the_loop_and_resumes_at_epoch_boundaries(stripes, tmp_path, monkeypatch):
    loop_dir, sink_dir, resumed_dir = tmp_path / "loop", tmp_path / "sink", tmp_path / "resumed"
    # dataset_sink_mode on, on CPU: MindSpore's documented fallback, said in the log
    _train(stripes, loop_dir, "--dataset_sink_mode", "on")
    assert "sinks data only on Ascend and GPU" in (loop_dir / "train.log").read_text()

    calls = []
    monkeypatch.setattr("src.trainer.sink_enabled", lambda setting, device: setting != "off")
    monkeypatch.setattr(ms, "data_sink", _stand_in_data_sink(calls))
    result = _train(stripes, sink_dir)
    assert calls == [2, 2, 2, 2]  # 4 steps per epoch in sinks of 2: one meter read (log point) per sink
    loop, sink = _records(loop_dir), _records(sink_dir)
    assert [r["step"] for r in sink] == [r["step"] for r in loop] == [2, 4, 6, 8]
    # epoch 1 sees the same batches in both paths (one pipeline seeded for epoch 0); the sunk pipeline then runs
    # on into its own second epoch, where the loop builds a new one, so only epoch 1 must agree
    np.testing.assert_allclose([r["loss"] for r in sink[:2]], [r["loss"] for r in loop[:2]], rtol=1e-5)
    assert result["global_step"] == 8 and (sink_dir / "acmix_resnet26_epoch2.ckpt").is_file()

    resumed_dir.mkdir()
    (resumed_dir / "acmix_resnet26_epoch1.ckpt").write_bytes((sink_dir / "acmix_resnet26_epoch1.ckpt").read_bytes())
    calls.clear()
    resumed = _train(stripes, resumed_dir, "--resume", "auto")
    assert calls == [2, 2] and resumed["global_step"] == 8
    assert [r["step"] for r in _records(resumed_dir)] == [6, 8]
