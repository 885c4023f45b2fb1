"""features_only maps at strides 4-32 and num_classes=0: one model per family at full depth in graph mode, and the
feature descriptions of every registered model."""

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


# one full-depth forward compile per family; the deeper siblings run the same code with other stage depths and
# widths, which test_feature_info_of_every_model checks without compiling
@pytest.mark.parametrize("name", ["acmix_resnet26", "acmix_san10", "acmix_pvt_tiny", "acmix_swin_tiny"])
@pytest.mark.slow
def test_features_and_pooled_output_of_each_family(name):
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


@pytest.mark.parametrize("name", list_models())
@pytest.mark.slow  # builds every full-size model (Swin-S and SAN-19 take seconds each)
def test_feature_info_of_every_model(name):
    backbone = create_model(name, num_classes=0)
    info = backbone.feature_info
    assert [f["reduction"] for f in info] == [4, 8, 16, 32]
    assert info[-1]["num_chs"] == backbone.num_features
    assert all(a["num_chs"] < b["num_chs"] for a, b in zip(info, info[1:])), info
    assert all(isinstance(f["module"], str) and f["module"] for f in info)
