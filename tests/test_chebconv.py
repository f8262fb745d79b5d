"""ChebConv (retina.models.chebconv) against a float64 numpy Chebyshev recursion."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from retina.mesh.hierarchy import build_hierarchy, default_hierarchy, scaled_laplacian
from retina.mesh.template import build_template
from retina.models.chebconv import ChebConv
from retina.models.mesh_decoder import MeshDecoder, MeshDecoderConfig


def _random_graph_laplacian(n: int = 12, seed: int = 0) -> sp.csr_matrix:
    """Scaled Laplacian of a random triangle soup on n vertices (a ring plus chords, so connected)."""
    rng = np.random.default_rng(seed)
    tris = [(i, (i + 1) % n, int(rng.integers(n))) for i in range(n)]
    tris = np.array([t for t in tris if len(set(t)) == 3], dtype=np.int64)
    return scaled_laplacian(tris, n)


def _reference(lap: np.ndarray, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Dense float64 eq. 3: x (B, V, C), weight (K, C, O) -> (B, V, O)."""
    terms = [x, np.einsum("uv,bvc->buc", lap, x)]
    for _ in range(2, len(weight)):
        terms.append(2.0 * np.einsum("uv,bvc->buc", lap, terms[-1]) - terms[-2])
    y = sum(t @ w for t, w in zip(terms, weight, strict=False))
    return y if bias is None else y + bias


def _compare(lap: sp.csr_matrix, k: int, bias: bool, seed: int) -> None:
    torch.manual_seed(seed)
    conv = ChebConv(3, 4, k, lap, bias=bias).double()
    if bias:
        torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, lap.shape[0], 3, dtype=torch.float64)
    got = conv(x).detach().numpy()
    b = conv.bias.detach().numpy() if bias else None
    want = _reference(lap.toarray(), x.numpy(), conv.weight.detach().numpy(), b)
    assert got.dtype == np.float64
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-6


@pytest.mark.parametrize("k", [1, 2, 3, 6])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_dense_reference_on_random_graph(k, bias):
    _compare(_random_graph_laplacian(), k, bias, seed=k)


@pytest.mark.parametrize("level", [1, 2])
def test_matches_dense_reference_on_hierarchy_level(level):
    _compare(default_hierarchy().levels[level].laplacian, 6, True, seed=level)


def test_eigenvector_gives_chebyshev_polynomials():
    lap = _random_graph_laplacian(10, seed=3)
    lams, vecs = np.linalg.eigh(lap.toarray())
    for j in (0, 4, 9):
        lam, vec = float(np.clip(lams[j], -1.0, 1.0)), vecs[:, j]
        for k in range(1, 7):
            conv = ChebConv(1, 1, k + 1, lap, bias=False).double()
            with torch.no_grad():
                conv.weight.zero_()
                conv.weight[k, 0, 0] = 1.0  # select T_k alone
            got = conv(torch.from_numpy(vec)[None, :, None]).detach().numpy()[0, :, 0]
            np.testing.assert_allclose(got, np.cos(k * np.arccos(lam)) * vec, atol=1e-10)


def test_gradcheck_inputs_and_weights():
    torch.manual_seed(0)
    conv = ChebConv(2, 3, 4, _random_graph_laplacian(8)).double()
    x = torch.randn(2, 8, 2, dtype=torch.float64, requires_grad=True)

    def run(inp, weight, bias):
        return torch.func.functional_call(conv, {"weight": weight, "bias": bias}, (inp,))

    w = conv.weight.detach().clone().requires_grad_(True)
    b = conv.bias.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(run, (x, w, b))


def test_k1_is_a_per_vertex_linear_layer():
    lap = _random_graph_laplacian()
    conv = ChebConv(3, 5, 1, lap)
    x = torch.randn(4, 12, 3)
    want = x @ conv.weight[0] + conv.bias
    torch.testing.assert_close(conv(x), want)


def test_batch_items_are_independent():
    torch.manual_seed(1)
    conv = ChebConv(3, 2, 5, _random_graph_laplacian())
    x = torch.randn(3, 12, 3)
    full = conv(x)
    for i in range(3):
        torch.testing.assert_close(full[i : i + 1], conv(x[i : i + 1]), rtol=1e-5, atol=1e-6)
    x2 = x.clone()
    x2[1] += 10.0
    torch.testing.assert_close(conv(x2)[[0, 2]], full[[0, 2]])


def test_float32_and_buffer_moves_with_module():
    conv = ChebConv(3, 2, 3, _random_graph_laplacian())
    assert conv.laplacian.dtype == torch.float64 and conv.laplacian.is_sparse
    assert "laplacian" not in conv.state_dict()
    y32 = conv(torch.ones(1, 12, 3))
    assert y32.dtype == torch.float32
    conv64 = conv.double()
    torch.testing.assert_close(conv64(torch.ones(1, 12, 3, dtype=torch.float64)).float(), y32)


def test_shape_errors():
    conv = ChebConv(3, 2, 3, _random_graph_laplacian())
    with pytest.raises(ValueError, match="expects"):
        conv(torch.ones(1, 11, 3))
    with pytest.raises(ValueError, match="square"):
        ChebConv(1, 1, 2, sp.csr_matrix((3, 4)))


def test_mesh_decoder_shape_on_default_hierarchy():
    hier = default_hierarchy()
    dec = MeshDecoder(hier)
    y = dec(torch.randn(2, 128))
    assert y.shape == (2, hier.num_vertices[0], 6) and torch.isfinite(y).all()


def test_mesh_decoder_gradcheck_on_tiny_hierarchy():
    hier = build_hierarchy(build_template(8, 8), levels=2, factor=2.0)  # a few dozen vertices
    torch.manual_seed(0)
    dec = MeshDecoder(hier, MeshDecoderConfig(code_dim=3, channels=(2, 2), K=3)).double()
    code = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    params = {k: p.detach().clone().requires_grad_(True) for k, p in dec.named_parameters()}
    names = list(params)

    def run(inp, *values):
        return torch.func.functional_call(dec, dict(zip(names, values, strict=True)), (inp,))

    assert torch.autograd.gradcheck(run, (code, *params.values()))


def test_mesh_decoder_rejects_wrong_widths():
    with pytest.raises(ValueError, match="channels"):
        MeshDecoder(default_hierarchy(), MeshDecoderConfig(channels=(8, 8)))
