import pytest
import torch

from retina.config import preset
from retina.priors import PriorCache, feature_sizes, make_priors


def test_golden_priors_on_a_tiny_input():
    # 20 x 12 input, strides 8 and 16: ceil(20/8)=3 rows, ceil(12/8)=2 cols; ceil(20/16)=2, ceil(12/16)=1.
    priors = make_priors((20, 12), (8, 16), ((4.0, 6.0), (10.0,)))
    expected = torch.tensor(
        [
            # level 0, row 0: (col 0, size 4), (col 0, size 6), (col 1, size 4), (col 1, size 6)
            [4, 4, 4, 4], [4, 4, 6, 6], [12, 4, 4, 4], [12, 4, 6, 6],
            [4, 12, 4, 4], [4, 12, 6, 6], [12, 12, 4, 4], [12, 12, 6, 6],
            [4, 20, 4, 4], [4, 20, 6, 6], [12, 20, 4, 4], [12, 20, 6, 6],
            # level 1: centres (8, 8) and (8, 24)
            [8, 8, 10, 10], [8, 24, 10, 10],
        ],
        dtype=torch.float32,
    )  # fmt: skip
    torch.testing.assert_close(priors, expected, rtol=0, atol=0)


def test_paper_layout_has_102300_anchors_at_640_with_75_percent_on_p2():
    cfg = preset("resnet50-paper").priors
    priors = make_priors((640, 640), cfg.strides, cfg.sizes)
    assert priors.shape == (102_300, 4)
    on_p2 = 160 * 160 * 3
    assert on_p2 / len(priors) == pytest.approx(0.7507, abs=1e-4)
    assert torch.all(priors[:on_p2, 2] < 26) and torch.all(priors[on_p2:, 2] >= 32)


def test_biubug6_layout_count_matches_network_output_at_odd_size():
    cfg = preset("mobilenet0.25").priors
    sizes = feature_sizes((481, 641), cfg.strides)
    assert sizes == [(61, 81), (31, 41), (16, 21)]
    assert len(make_priors((481, 641), cfg.strides, cfg.sizes)) == 2 * sum(h * w for h, w in sizes)


def test_cache_returns_the_same_tensor_and_is_bounded():
    cache = PriorCache((8,), ((16.0,),), max_entries=2)
    a = cache((32, 32), torch.float32, torch.device("cpu"))
    assert cache((32, 32), torch.float32, torch.device("cpu")) is a
    cache((16, 16), torch.float32, torch.device("cpu"))
    cache((8, 8), torch.float32, torch.device("cpu"))
    assert len(cache._cache) == 2


def test_float64_priors_carry_the_configured_sizes_exactly_and_warn_nothing():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch.meshgrid without an explicit indexing
        priors = make_priors((16, 24), (8,), ((10.1, 20.3),), dtype=torch.float64)
    assert priors[:2, 2:].tolist() == [[10.1, 10.1], [20.3, 20.3]]  # not rounded through float32
    assert priors.dtype == torch.float64


def test_levels_and_sizes_must_pair_up():
    with pytest.raises(ValueError):
        make_priors((32, 32), (8, 16, 32), ((16.0,), (32.0,)))


def test_priors_are_made_on_the_requested_device_and_dtype():
    # the "meta" device stands in for a GPU: tensors with a device but no data
    assert make_priors((32, 32), (8,), ((16.0,),), device="meta").device.type == "meta"
    cache = PriorCache((8,), ((16.0,),))
    cpu = cache((32, 32), torch.float32, torch.device("cpu"))
    meta = cache((32, 32), torch.float32, torch.device("meta"))
    assert cpu.device.type == "cpu" and meta.device.type == "meta"  # one entry per device
    assert cpu.dtype == torch.float32
    assert cache((32, 32), torch.float64, torch.device("cpu")).dtype == torch.float64


def test_cache_keeps_the_32_most_recent_sizes():
    cache = PriorCache((8,), ((16.0,),))
    cpu = torch.device("cpu")
    first = cache((8, 8), torch.float32, cpu)
    for k in range(1, 32):
        cache((8, 8 + k), torch.float32, cpu)
    assert cache((8, 8), torch.float32, cpu) is first  # 32 entries: all kept
    cache((9, 9), torch.float32, cpu)  # the 33rd evicts the oldest
    assert cache((8, 8), torch.float32, cpu) is not first
