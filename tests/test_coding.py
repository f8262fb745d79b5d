import math

import torch

from retina.coding import decode_boxes, decode_landmarks, encode_boxes, encode_landmarks

V = (0.1, 0.2)


def test_box_coding_golden_values():
    prior = torch.tensor([[50.0, 40.0, 20.0, 10.0]], dtype=torch.float64)  # cx cy w h
    box = torch.tensor([[42.0, 36.0, 62.0, 56.0]], dtype=torch.float64)  # centre (52, 46), size 20 x 20
    deltas = encode_boxes(box, prior, V)
    expected = [(52 - 50) / (0.1 * 20), (46 - 40) / (0.1 * 10), math.log(20 / 20) / 0.2, math.log(20 / 10) / 0.2]
    torch.testing.assert_close(deltas, torch.tensor([expected], dtype=torch.float64))
    torch.testing.assert_close(decode_boxes(deltas, prior, V), box)


def test_landmark_coding_golden_values():
    prior = torch.tensor([[10.0, 20.0, 4.0, 8.0]], dtype=torch.float64)
    lmk = torch.tensor([[[10.4, 20.8], [9.6, 19.2], [10.0, 20.0], [11.2, 22.4], [8.0, 16.0]]], dtype=torch.float64)
    deltas = encode_landmarks(lmk, prior, V)
    expected = [1.0, 1.0, -1.0, -1.0, 0.0, 0.0, 3.0, 3.0, -5.0, -5.0]
    torch.testing.assert_close(deltas, torch.tensor([expected], dtype=torch.float64))
    torch.testing.assert_close(decode_landmarks(deltas, prior, V), lmk)


def test_round_trip_random_float64_batched():
    g = torch.Generator().manual_seed(0)
    priors = torch.rand(3, 7, 4, generator=g, dtype=torch.float64) * 100 + 1
    xy = torch.rand(3, 7, 2, generator=g, dtype=torch.float64) * 200
    boxes = torch.cat([xy, xy + torch.rand(3, 7, 2, generator=g, dtype=torch.float64) * 50 + 0.5], dim=-1)
    torch.testing.assert_close(decode_boxes(encode_boxes(boxes, priors, V), priors, V), boxes)
    lmk = torch.rand(3, 7, 5, 2, generator=g, dtype=torch.float64) * 200
    torch.testing.assert_close(decode_landmarks(encode_landmarks(lmk, priors, V), priors, V), lmk)
