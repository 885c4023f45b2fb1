"""Every registered model at full depth in graph mode: features_only maps at strides 4-32 and num_classes=0."""

from __future__ import annotations

import numpy as np
import pytest
from mindspore import Tensor, nn

from src.models import FeatureExtractor, create_model, list_models

# a small input each model accepts at full depth: Swin needs a window that divides every stage map
SMALL = {"acmix_swin_tiny": {"window_size": 2}, "acmix_swin_small": {"window_size": 2}}
FIXED = ("acmix_swin", "acmix_pvt")


class _Both(nn.Cell):
    """One graph: the stage maps and the pooled features of the same headless backbone."""

    def __init__(self, backbone: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self.backbone = backbone
        self.maps = FeatureExtractor(backbone)

    def construct(self, x):
        return self.maps(x), self.backbone(x)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.slow  # one full-depth forward compile per model
def test_features_and_pooled_output_of_every_model(name):
    size = 64
    kw = dict(SMALL.get(name, {}), **({"img_size": size} if name.startswith(FIXED) else {}))
    backbone = create_model(name, num_classes=0, **kw)
    net = _Both(backbone)
    net.set_train(False)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32))
    maps, pooled = net(x)
    info = backbone.feature_info
    assert [f["reduction"] for f in info] == [4, 8, 16, 32]
    assert len(maps) == 4
    for m, f in zip(maps, info):
        assert m.shape == (2, f["num_chs"], size // f["reduction"], size // f["reduction"]), (name, f)
        assert np.isfinite(m.asnumpy()).all()
    assert pooled.shape == (2, info[-1]["num_chs"])
    assert np.isfinite(pooled.asnumpy()).all()
