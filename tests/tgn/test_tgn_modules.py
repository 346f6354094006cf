"""TGN modules: time encoding, messages, GRU memory update by hand, attention == TransformerConv."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import riskgraph.models.tgn.artifact  # noqa: E402
import riskgraph.models.tgn.model  # noqa: E402
import riskgraph.models.tgn.modules  # noqa: E402
import riskgraph.models.tgn.neighbours  # noqa: E402
import riskgraph.models.tgn.runtime  # noqa: E402
import riskgraph.models.tgn.synthetic  # noqa: E402
from riskgraph.models.tgn.model import AS_DESTINATION, AS_SOURCE, TGN, RowLayout, TGNConfig  # noqa: E402
from riskgraph.models.tgn.modules import (LinkDecoder, MessageFunction, RiskDecoder, TemporalAttentionEmbedding,  # noqa: E402
                                TimeEncoder)


@pytest.mark.parametrize("mod", [riskgraph.models.tgn.modules, riskgraph.models.tgn.model, riskgraph.models.tgn.neighbours, riskgraph.models.tgn.runtime,
                                 riskgraph.models.tgn.artifact, riskgraph.models.tgn.synthetic])
def test_doctests(mod) -> None:
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0


def test_time_encoder_is_cos_of_affine_time() -> None:
    enc = TimeEncoder(3)
    np.testing.assert_allclose(enc.lin.weight.detach().numpy().ravel(), [1.0, 10 ** -4.5, 1e-9], rtol=1e-6)
    with torch.no_grad():
        enc.lin.weight.copy_(torch.tensor([[0.5], [2.0], [0.0]]))
        enc.lin.bias.copy_(torch.tensor([0.0, 1.0, 0.25]))
    dt = torch.tensor([0.0, 3.0])
    want = np.cos(np.array([[0.0, 1.0, 0.25], [1.5, 7.0, 0.25]]))
    np.testing.assert_allclose(enc(dt).detach().numpy(), want, rtol=1e-6)
    enc.reset_parameters()
    assert float(enc.lin.weight[0, 0].detach()) == 1.0 and float(enc.lin.bias.detach().abs().sum()) == 0.0



@pytest.mark.parametrize("scale", [1.0, 5e4, 3e7])  # gaps of seconds, half a day, a year (w = 1)
def test_time_encoder_cos_is_accurate_and_differentiable_at_long_gaps(scale: float) -> None:
    enc = TimeEncoder(16)
    dt = torch.rand(500, generator=torch.Generator().manual_seed(1)) * scale
    arg = enc.lin(dt.reshape(-1, 1)).detach().double()
    got = enc(dt).detach()
    # within about one float32 ulp of cos of the very same argument, computed in float64
    assert float((got.double() - arg.cos()).abs().max()) < 1.2e-7
    # training: the gradient reaches the weights as -sin(arg) * dt
    enc.zero_grad()
    enc(dt).sum().backward()
    want = (-arg.sin() * dt.double().reshape(-1, 1)).sum(dim=0)
    np.testing.assert_allclose(enc.lin.weight.grad.double().ravel().numpy(), want.numpy(), rtol=1e-4,
                               atol=1e-4 * float(dt.abs().sum()))
    # (finite differences lose their precision on larger arguments)
    x = (torch.rand(8, dtype=torch.float64) * min(scale, 1e4)).requires_grad_()
    assert torch.autograd.gradcheck(riskgraph.models.tgn.modules._Cos.apply, (x,))

def test_message_functions() -> None:
    m = MessageFunction(mem_dim=2, edge_dim=1, time_dim=1)
    a, b, e, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]]), torch.tensor([[5.0]]), torch.tensor([[6.0]])
    assert m.out_channels == 6
    assert m(a, b, e, t).tolist() == [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]
    mlp = MessageFunction(2, 1, 1, kind="mlp", msg_dim=5)
    assert mlp.out_channels == 5 and mlp(a, b, e, t).shape == (1, 5)
    with pytest.raises(ValueError, match="identity"):
        MessageFunction(2, 1, 1, kind="sum")


def _gru_ref(x: np.ndarray, h: np.ndarray, gru: torch.nn.GRUCell) -> np.ndarray:
    """GRUCell written out (PyTorch's gate order r, z, n) in float64."""
    w_ih, w_hh = gru.weight_ih.detach().double().numpy(), gru.weight_hh.detach().double().numpy()
    b_ih, b_hh = gru.bias_ih.detach().double().numpy(), gru.bias_hh.detach().double().numpy()
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    m = h.shape[1]
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    r, z = sig(gi[:, :m] + gh[:, :m]), sig(gi[:, m:2 * m] + gh[:, m:2 * m])
    n = np.tanh(gi[:, 2 * m:] + r * gh[:, 2 * m:])
    return (1 - z) * n + z * h


def test_apply_pending_matches_hand_computed_gru() -> None:
    cfg = TGNConfig(mem_dim=2, time_dim=1, emb_dim=2, edge_dim=1, k=1, heads=1, dropout=0.0)
    model = TGN.from_config(cfg, seed=3)
    with torch.no_grad():  # hand-set weights, every entry distinct
        g = model.updater.gru
        g.weight_ih.copy_(torch.arange(36, dtype=torch.float32).view(6, 6) / 50.0 - 0.3)
        g.weight_hh.copy_(torch.arange(12, dtype=torch.float32).view(6, 2) / 20.0 - 0.25)
        g.bias_ih.copy_(torch.linspace(-0.2, 0.3, 6))
        g.bias_hh.copy_(torch.linspace(0.1, -0.1, 6))
        model.time_enc.lin.weight.fill_(0.5)
        model.time_enc.lin.bias.fill_(0.1)
    lay = RowLayout(2, 1)
    rows = np.zeros((3, lay.width), np.float32)
    rows[0, :2], rows[0, lay.other], rows[0, lay.edge], rows[0, lay.dt], rows[0, lay.kind] = \
        [0.2, -0.4], [0.5, 0.1], [0.7], 3.0, AS_SOURCE
    rows[1, :2], rows[1, lay.other], rows[1, lay.edge], rows[1, lay.dt], rows[1, lay.kind] = \
        [-0.3, 0.6], [0.0, 0.9], [0.2], 0.0, AS_DESTINATION
    rows[2, :2] = [0.8, 0.8]  # no pending message: memory kept as is
    with torch.no_grad():
        got = model.apply_pending(torch.from_numpy(rows)).numpy()
    r = rows.astype(np.float64)
    msg = np.concatenate([r[:2, :2], r[:2, lay.other], r[:2, lay.edge], np.cos(0.5 * r[:2, [lay.dt]] + 0.1)], 1)
    want = np.vstack([_gru_ref(msg, r[:2, :2], model.updater.gru), r[2:, :2]])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_apply_pending_routes_roles_to_their_message_function() -> None:
    cfg = TGNConfig(mem_dim=2, time_dim=1, emb_dim=2, edge_dim=1, k=1, heads=1, message="mlp", msg_dim=3)
    model = TGN.from_config(cfg, seed=0)
    lay = model.layout
    row = np.zeros((1, lay.width), np.float32)
    row[0, :2], row[0, lay.edge] = [0.3, -0.2], [0.9]
    out = {}
    for kind in (AS_SOURCE, AS_DESTINATION):
        row[0, lay.kind] = kind
        with torch.no_grad():
            out[kind] = model.apply_pending(torch.from_numpy(row)).numpy()
        fn = model.msg_src if kind == AS_SOURCE else model.msg_dst
        x = torch.from_numpy(row)
        with torch.no_grad():
            msg = fn(x[:, :2], x[:, lay.other], x[:, lay.edge], model.time_enc(x[:, lay.dt]))
            np.testing.assert_allclose(out[kind], model.updater(msg, x[:, :2]).numpy(), atol=1e-7)
    assert not np.allclose(out[AS_SOURCE], out[AS_DESTINATION])  # two distinct modules, as in PyG


def test_attention_equals_pyg_transformer_conv() -> None:
    tg = pytest.importorskip("torch_geometric.nn")
    torch.manual_seed(5)
    q_n, k, d_in, d_e, heads, c = 4, 3, 8, 5, 2, 3
    conv = tg.TransformerConv(d_in, c, heads=heads, edge_dim=d_e, dropout=0.0).eval()
    ours = TemporalAttentionEmbedding(d_in, d_e, heads * c, heads=heads, dropout=0.0).eval()
    ours.load_state_dict(conv.state_dict())
    x, x_nbr, edge = torch.randn(q_n, d_in), torch.randn(q_n, k, d_in), torch.randn(q_n, k, d_e)
    mask = torch.tensor([[True, True, True], [True, False, True], [False, False, False], [True, False, False]])
    qi, kj = torch.nonzero(mask, as_tuple=True)
    x_all = torch.cat([x, x_nbr.reshape(-1, d_in)])
    edge_index = torch.stack([q_n + qi * k + kj, qi])
    with torch.no_grad():
        want, (_, alpha) = conv(x_all, edge_index, edge[qi, kj], return_attention_weights=True)
        got, att = ours(x, x_nbr, edge, mask)
    np.testing.assert_allclose(got.numpy(), want[:q_n].numpy(), atol=1e-5)
    np.testing.assert_allclose(att.permute(0, 2, 1)[qi, kj].numpy(), alpha.numpy(), atol=1e-6)
    assert float(att[2].abs().sum()) == 0.0  # no neighbours: no attention, just the skip path
    np.testing.assert_allclose(got[2].numpy(), ours.lin_skip(x[2]).detach().numpy(), atol=1e-6)


def test_attention_ignores_masked_neighbours() -> None:
    torch.manual_seed(0)
    att = TemporalAttentionEmbedding(4, 2, 4, heads=2, dropout=0.0).eval()
    x, x_nbr, e = torch.randn(1, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 2)
    mask = torch.tensor([[True, False, True]])
    z1, _ = att(x, x_nbr, e, mask)
    x_nbr[0, 1] += 100.0
    e[0, 1] -= 50.0
    z2, _ = att(x, x_nbr, e, mask)
    assert torch.equal(z1, z2)


def test_decoders() -> None:
    torch.manual_seed(1)
    link = LinkDecoder(4)
    zs, zd = torch.randn(5, 4), torch.randn(5, 4)
    want = link.lin_final(torch.relu(link.lin_src(zs) + link.lin_dst(zd))).squeeze(-1)
    assert torch.equal(link(zs, zd), want)
    risk = RiskDecoder(4, 3, hidden=6)
    e = torch.rand(5, 3)
    assert risk(zs, zd, e).shape == (5,)
    before = [p.clone() for p in risk.parameters()]
    risk.reset_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, risk.parameters()))


def test_config_validation_and_round_trip() -> None:
    cfg = TGNConfig(mem_dim=16, emb_dim=8, heads=4, message="mlp", msg_dim=12)
    assert TGNConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"k": 0}, {"k": 17}, {"emb_dim": 10, "heads": 4}, {"message": "gru"}, {"dropout": 1.0},
                {"mem_dim": 0}):
        with pytest.raises(ValueError):
            TGNConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        TGNConfig.from_dict({"mem_dim": 8, "colour": "red"})


def test_from_config_is_seeded_and_leaves_global_rng_alone() -> None:
    cfg = TGNConfig(mem_dim=8, time_dim=4, emb_dim=8)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = TGN.from_config(cfg, seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b = TGN.from_config(cfg, seed=7)
    c = TGN.from_config(cfg, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.row_width == 2 * 8 + cfg.edge_dim + 2
    assert math.isclose(float(a.time_enc.lin.weight[0, 0].detach()), 1.0)
