"""TGNRuntime: memory semantics by hand, PyG parity, train/serve parity, residency, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from riskgraph.features.catalogue import N_FEATURES  # noqa: E402
from riskgraph.features.kernels import compute_features  # noqa: E402
from riskgraph.features.layout import OUT  # noqa: E402
from riskgraph.features.unit import to_unit  # noqa: E402
from riskgraph.models.tgn.model import AS_DESTINATION, AS_SOURCE, NO_MESSAGE, TGN, TGNConfig  # noqa: E402
from riskgraph.models.tgn.runtime import TGNRuntime  # noqa: E402


def _hand_model() -> TGN:
    """mem 2, edge 1, time 1; GRU with r = z = 1/2 and n = tanh(W_in x): new = (tanh(W_in x) + h) / 2."""
    cfg = TGNConfig(mem_dim=2, time_dim=1, emb_dim=2, edge_dim=1, k=1, heads=1, dropout=0.0)
    model = TGN.from_config(cfg, seed=0).eval()
    g = model.updater.gru
    with torch.no_grad():
        for p in (g.weight_ih, g.weight_hh, g.bias_ih, g.bias_hh):
            p.zero_()
        # message x = [own0, own1, other0, other1, edge, cos(dt / 2)]
        g.weight_ih[4, 0], g.weight_ih[4, 2], g.weight_ih[4, 4] = 2.0, 1.0, 1.0  # n0 = tanh(2 own0 + other0 + e)
        g.weight_ih[5, 1], g.weight_ih[5, 5] = -1.0, 1.0  # n1 = tanh(cos(dt / 2) - own1)
        model.time_enc.lin.weight.fill_(0.5)
        model.time_enc.lin.bias.zero_()
    return model


def test_memory_update_by_hand(make_table, ident) -> None:
    model = _hand_model()
    rt = TGNRuntime(model, "cpu", fold_on_write=False)
    lay = model.layout
    t = make_table(3, model.row_width)
    a, b = 0, 1
    # batch 1: a -> b at t=2 with edge 0.3; nothing is pending yet, so memory stays 0
    s1 = rt.score_batch(t, [a], [b], [2.0], [[0.3]], ident)
    rt.update_batch(t, s1)
    np.testing.assert_array_equal(t.mem[a], np.array([0, 0, 0, 0, 0.3, 0.0, AS_SOURCE], np.float32))
    np.testing.assert_array_equal(t.mem[b], np.array([0, 0, 0, 0, 0.3, 0.0, AS_DESTINATION], np.float32))
    assert t.mem_ts[[a, b]].tolist() == [2.0, 2.0] and math.isnan(t.mem_ts[2])
    # batch 2: a -> b at t=5 with edge 0.7; both fold their batch-1 message (dt = 0) first
    s2 = rt.score_batch(t, [a], [b], [5.0], [[0.7]], ident)
    rt.update_batch(t, s2)
    m1 = 0.5 * np.array([math.tanh(0.3), math.tanh(1.0)])  # same for a and b
    np.testing.assert_allclose(t.mem[a, :2], m1, atol=1e-7)
    np.testing.assert_allclose(t.mem[b, :2], m1, atol=1e-7)
    np.testing.assert_allclose(t.mem[a, lay.other], m1, atol=1e-7)  # b's memory at the event, by value
    assert t.mem[a, lay.dt] == 3.0 and t.mem[a, lay.kind] == AS_SOURCE and t.mem[a, lay.edge][0] == np.float32(0.7)
    assert t.mem_ts[a] == 5.0
    # a's memory once its batch-2 message is folded in
    want = 0.5 * np.array([math.tanh(2 * m1[0] + m1[0] + 0.7), math.tanh(math.cos(1.5) - m1[1])]) + 0.5 * m1
    np.testing.assert_allclose(rt.current_memory(t, [a])[0], want, atol=1e-6)
    np.testing.assert_allclose(rt.current_memory(t, [2])[0], [0.0, 0.0])  # never seen
    # folding on write stores that memory right away and marks the message consumed
    eager = TGNRuntime(model, "cpu", fold_on_write=True)
    t2 = make_table(3, model.row_width)
    for ts, e in ((2.0, 0.3), (5.0, 0.7)):
        eager.update_batch(t2, eager.score_batch(t2, [a], [b], [ts], [[e]], ident))
    np.testing.assert_allclose(t2.mem[a, :2], want, atol=1e-6)
    assert t2.mem[a, lay.kind] == NO_MESSAGE and t2.mem_ts[a] == 5.0
    np.testing.assert_allclose(eager.current_memory(t2, [a, b]), rt.current_memory(t, [a, b]), atol=1e-7)


def test_pending_is_the_last_interaction_of_the_batch(make_table, ident) -> None:
    model = _hand_model()
    rt = TGNRuntime(model, "cpu", fold_on_write=False)
    lay = model.layout
    t = make_table(5, model.row_width)
    # node 0: src at 1, dst at 3 (from 2), src at 2 -> its last is the t=3 event, as destination
    # node 3 -> 4 twice at t=4: the later event wins the tie; node 1 has a self loop at t=6
    src, dst = [0, 2, 0, 3, 3, 1], [1, 0, 4, 4, 4, 1]
    ts, e = [1.0, 3.0, 2.0, 4.0, 4.0, 6.0], [[0.1], [0.2], [0.3], [0.4], [0.5], [0.6]]
    rt.update_batch(t, rt.score_batch(t, src, dst, ts, e, ident))
    got = {i: (t.mem[i, lay.edge][0], t.mem[i, lay.kind], t.mem_ts[i]) for i in range(5)}
    f = np.float32
    assert got[0] == (f(0.2), AS_DESTINATION, 3.0)
    assert got[1] == (f(0.6), AS_DESTINATION, 6.0)  # self loop: the destination role comes last
    assert got[2] == (f(0.2), AS_SOURCE, 3.0)
    assert got[3] == (f(0.5), AS_SOURCE, 4.0)
    assert got[4] == (f(0.5), AS_DESTINATION, 4.0)


def test_late_event_never_moves_time_backwards(make_table, ident) -> None:
    model = _hand_model()
    rt = TGNRuntime(model, "cpu", fold_on_write=False)
    t = make_table(2, model.row_width)
    rt.update_batch(t, rt.score_batch(t, [0], [1], [10.0], [[0.1]], ident))
    rt.update_batch(t, rt.score_batch(t, [0], [1], [4.0], [[0.2]], ident))
    assert t.mem_ts.tolist() == [10.0, 10.0]
    assert t.mem[0, model.layout.dt] == 0.0 and t.mem[0, model.layout.edge][0] == np.float32(0.2)


def _stream(n_nodes: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n_nodes, n), rng.integers(0, n_nodes, n)
    ts = np.cumsum(rng.exponential(3.0, n))
    return src, dst, ts, rng.lognormal(3.0, 1.0, n)


def test_train_forward_in_eval_mode_equals_serving(make_table, make_model, ident) -> None:
    model = make_model(seed=2, edge_dim=N_FEATURES, dropout=0.3, message="mlp")
    rt = TGNRuntime(model, "cpu", fold_on_write=False)  # as train() runs it
    serving = TGNRuntime(model, "cpu")  # folds on write
    src, dst, ts, amt = _stream(20, 300, seed=1)
    train_t, serve_t = make_table(20, model.row_width), make_table(20, model.row_width)
    rng = np.random.default_rng(0)
    for lo in range(0, 300, 60):
        sl = slice(lo, lo + 60)
        e = to_unit(compute_features(train_t, src[sl], dst[sl], src[sl], dst[sl], ts[sl], amt[sl]))
        compute_features(serve_t, src[sl], dst[sl], src[sl], dst[sl], ts[sl], amt[sl])
        model.eval()
        with torch.enable_grad():
            fwd = rt.forward(train_t, src[sl], dst[sl], ts[sl], e, ident, neg_slot=rng.integers(0, 20, 60))
        assert fwd.link_logit.requires_grad
        served = serving.score_batch(serve_t, src[sl], dst[sl], ts[sl], e, ident)
        np.testing.assert_allclose(torch.sigmoid(fwd.link_logit).detach().numpy(), served.link_prob, atol=1e-6)
        np.testing.assert_allclose(torch.sigmoid(fwd.risk_logit).detach().numpy(), served.risk, atol=1e-6)
        rt.update_batch(train_t, fwd)
        serving.update_batch(serve_t, served)
        np.testing.assert_allclose(rt.current_memory(train_t, np.arange(20)),
                                   serving.current_memory(serve_t, np.arange(20)), atol=1e-6)
        np.testing.assert_array_equal(train_t.mem_ts, serve_t.mem_ts)
    assert (train_t.mem[:, model.layout.kind] != NO_MESSAGE).sum() == len(np.unique(np.r_[src, dst]))
    assert (serve_t.mem[:, model.layout.kind] == NO_MESSAGE).all()
    model.train()  # dropout on: training-mode scores differ, and score_batch still serves in eval mode
    with torch.no_grad():
        noisy = rt.forward(serve_t, src[:60], dst[:60], ts[-1] + 1 + ts[:60], np.zeros((60, N_FEATURES)), ident)
    again = rt.score_batch(serve_t, src[:60], dst[:60], ts[-1] + 1 + ts[:60], np.zeros((60, N_FEATURES)), ident)
    assert model.training and not np.allclose(torch.sigmoid(noisy.link_logit).numpy(), again.link_prob)


@pytest.mark.parametrize("fold_on_write", [False, True])
def test_memory_matches_pyg_tgn_memory(make_table, ident, fold_on_write) -> None:
    tgn = pytest.importorskip("torch_geometric.nn.models.tgn")
    cfg = TGNConfig(mem_dim=6, time_dim=4, emb_dim=6, edge_dim=3, k=2, heads=1)
    model = TGN.from_config(cfg, seed=4).eval()
    rt = TGNRuntime(model, "cpu", fold_on_write=fold_on_write)
    n_nodes = 7
    ref = tgn.TGNMemory(n_nodes, 3, 6, 4, message_module=tgn.IdentityMessage(3, 6, 4),
                        aggregator_module=tgn.LastAggregator())
    ref.gru.load_state_dict(model.updater.gru.state_dict())
    ref.time_enc.lin.load_state_dict(model.time_enc.lin.state_dict())
    # eval mode: PyG applies each batch's messages right after it (the same memory as our pending
    # message folded in). Module.train, not TGNMemory.train: the latter would "flush" the empty
    # message store, i.e. run the GRU on zero messages and give never-seen nodes non-zero memory.
    torch.nn.Module.train(ref, False)
    t = make_table(n_nodes, model.row_width)
    t.mem_ts[:] = 0.0  # PyG's last_update starts at 0: the first message then has dt = t as well
    rng = np.random.default_rng(3)
    ts = np.arange(1, 41)  # distinct integer times: PyG's LastAggregator has no tie rule
    src, dst = rng.integers(0, n_nodes, 40), rng.integers(0, n_nodes, 40)
    msg = rng.random((40, 3)).astype(np.float32)
    for lo in range(0, 40, 8):
        sl = slice(lo, lo + 8)
        rt.update_batch(t, rt.score_batch(t, src[sl], dst[sl], ts[sl].astype(float), msg[sl], ident))
        ref.update_state(torch.from_numpy(src[sl]), torch.from_numpy(dst[sl]), torch.from_numpy(ts[sl]),
                         torch.from_numpy(msg[sl]))
        ours = rt.current_memory(t, np.arange(n_nodes))
        np.testing.assert_allclose(ours, ref.memory.detach().numpy(), atol=2e-6)
        seen = np.unique(np.r_[src[: lo + 8], dst[: lo + 8]])
        np.testing.assert_array_equal(t.mem_ts[seen], ref.last_update.numpy()[seen])
        assert np.abs(ours[seen]).sum() > 0


def test_only_the_batch_ends_are_written(make_table, make_model, ident, ring_writer) -> None:
    model = make_model(seed=1)
    rt = TGNRuntime(model, "cpu")
    t = make_table(6, model.row_width)
    ring_writer(t, 0, [(4, 1.0, 2.0, OUT)])
    t.mem[4, :] = 0.25
    t.mem[4, model.layout.kind] = AS_SOURCE  # node 4 has a pending message: folded for reading only
    t.mem_ts[4] = 1.0
    before = t.mem.copy(), t.mem_ts.copy()
    model.eval()
    fwd = rt.forward(t, [0], [1], [2.0], np.zeros((1, 3)), ident, neg_slot=[5])
    assert fwd.nbr.ids[0, 0] == 4 and fwd.nbr.valid.sum() == 1
    rt.update_batch(t, fwd)
    changed = np.flatnonzero((t.mem != before[0]).any(axis=1) | (t.mem_ts != before[1]) & ~np.isnan(before[1]))
    assert sorted(changed.tolist()) == [0, 1]
    assert np.isnan(t.mem_ts[[2, 3, 5]]).all()


def test_neighbours_must_be_resident(make_table, make_model, ring_writer) -> None:
    model = make_model()
    rt = TGNRuntime(model, "cpu")
    t = make_table(4, model.row_width)
    ring_writer(t, 0, [(70, 1.0, 1.0, OUT), (71, 2.0, 1.0, OUT), (72, 9.0, 1.0, OUT)])
    assert rt.neighbour_ids(t, [0], [1], [5.0]).tolist() == [70, 71]  # 72 is later than the event
    resident = {70: 2, 71: 3}
    found = lambda ids: np.array([resident.get(int(i), -1) for i in ids], np.int64)  # noqa: E731
    s = rt.score_batch(t, [0], [1], [5.0], np.zeros((1, 3)), found)
    assert set(s.top_ids[0, 0, :2].tolist()) == {70, 71} and s.top_ids[0, 1].tolist() == [-1, -1, -1]
    del resident[71]
    with pytest.raises(ValueError, match=r"not resident.*\[71\]"):
        rt.score_batch(t, [0], [1], [5.0], np.zeros((1, 3)), found)
    with pytest.raises(ValueError, match="one integer slot per id"):
        rt.score_batch(t, [0], [1], [5.0], np.zeros((1, 3)), lambda ids: np.zeros(1))


def test_slot_mapping_does_not_change_scores(make_table, make_model, ident) -> None:
    model = make_model(seed=3, edge_dim=N_FEATURES)
    rt = TGNRuntime(model, "cpu")
    src, dst, ts, amt = _stream(10, 120, seed=5)
    a = make_table(10, model.row_width)
    perm = np.random.default_rng(1).permutation(10)  # node id i lives in slot perm[i] of table b
    b = make_table(10, model.row_width)
    for lo in range(0, 120, 40):
        sl = slice(lo, lo + 40)
        e = to_unit(compute_features(a, src[sl], dst[sl], src[sl], dst[sl], ts[sl], amt[sl]))
        compute_features(b, perm[src[sl]], perm[dst[sl]], src[sl], dst[sl], ts[sl], amt[sl])
        sa = rt.score_batch(a, src[sl], dst[sl], ts[sl], e, ident)
        sb = rt.score_batch(b, perm[src[sl]], perm[dst[sl]], ts[sl], e, lambda ids: perm[ids])
        np.testing.assert_allclose(sa.link_prob, sb.link_prob, atol=1e-6)
        np.testing.assert_allclose(sa.risk, sb.risk, atol=1e-6)
        np.testing.assert_array_equal(sa.top_ids, sb.top_ids)
        rt.update_batch(a, sa)
        rt.update_batch(b, sb)
    np.testing.assert_allclose(a.mem, b.mem[perm], atol=1e-6)


def test_top_neighbours_follow_attention(make_table, make_model, ident, ring_writer) -> None:
    model = make_model(seed=6, k=4)
    rt = TGNRuntime(model, "cpu", top_k=4)
    t = make_table(8, model.row_width)
    ring_writer(t, 0, [(2, 1.0, 5.0, OUT), (3, 2.0, np.nan, OUT), (4, 3.0, 50.0, OUT)])
    t.mem[2:5, : model.config.mem_dim] = np.random.default_rng(0).normal(size=(3, model.config.mem_dim))
    s = rt.score_batch(t, [0], [1], [4.0], np.zeros((1, 3)), ident)
    model.eval()
    with torch.no_grad():
        fwd = rt.forward(t, [0], [1], [4.0], np.zeros((1, 3)), ident)
    w = fwd.attn[0].mean(0).numpy()  # src query, over its ring entries newest first: 4, 3, 2
    order = np.argsort(-w[:3])
    assert s.top_ids[0, 0, :3].tolist() == [[4, 3, 2][i] for i in order] and s.top_ids[0, 0, 3] == -1
    np.testing.assert_allclose(s.top_attn[0, 0, :3], w[order], atol=1e-7)
    assert math.isclose(float(s.top_attn[0, 0].sum()), 1.0, rel_tol=1e-5) and s.top_attn[0, 1].sum() == 0


def test_empty_batch(make_table, make_model, ident) -> None:
    model = make_model()
    rt = TGNRuntime(model, "cpu")
    t = make_table(2, model.row_width)
    s = rt.score_batch(t, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)), ident)
    assert s.risk.shape == (0,) and s.top_ids.shape == (0, 2, 3)
    rt.update_batch(t, s)


def test_input_validation(make_table, make_model, ident) -> None:
    model = make_model()
    rt = TGNRuntime(model, "cpu")
    t = make_table(3, model.row_width)
    e = np.zeros((1, 3))
    with pytest.raises(ValueError, match="table.mem must be float32"):
        rt.score_batch(make_table(3, model.row_width + 1), [0], [1], [1.0], e, ident)
    with pytest.raises(ValueError, match="edge_feats must have shape"):
        rt.score_batch(t, [0], [1], [1.0], np.zeros((1, 4)), ident)
    with pytest.raises(ValueError, match="edge_feats must be finite"):
        rt.score_batch(t, [0], [1], [1.0], np.full((1, 3), np.nan), ident)
    with pytest.raises(ValueError, match=r"dst_slot must be in \[0, 3\)"):
        rt.score_batch(t, [0], [3], [1.0], e, ident)
    with pytest.raises(ValueError, match="ts must be finite"):
        rt.score_batch(t, [0], [1], [np.inf], e, ident)
    with pytest.raises(ValueError, match="src_slot must have shape"):
        rt.score_batch(t, [0, 1], [1], [1.0], e, ident)
    t.mem[1, model.layout.kind] = 7.0
    with pytest.raises(ValueError, match=r"corrupt node rows.*slot 1"):
        rt.score_batch(t, [0], [1], [1.0], e, ident)
    t.mem[1, model.layout.kind] = 0.0
    t.mem[0, 3] = np.nan
    with pytest.raises(ValueError, match=r"corrupt node rows.*slot 0"):
        rt.score_batch(t, [0], [1], [1.0], e, ident)
    with pytest.raises(ValueError, match="top_k"):
        TGNRuntime(model, "cpu", top_k=5)


def _lead_of(table, rt: TGNRuntime):
    """A LeadOf over an in-memory table whose slots are the ids (what GraphStore.peek_lead gives)."""
    width, flag = rt.lead_columns

    def lead_of(ids):
        whole = np.flatnonzero(table.mem[ids, flag] != 0)
        return table.mem[ids, :width].copy(), whole, table.mem[ids[whole]]
    return lead_of


def test_neighbour_memory_from_lead_of_equals_the_full_rows(make_table, make_model, ident) -> None:
    # fold on read leaves pending messages in the rows: lead_of must hand those over whole
    model = make_model(seed=4, edge_dim=N_FEATURES)
    rt = TGNRuntime(model, "cpu", fold_on_write=False)
    src, dst, ts, amt = _stream(12, 160, seed=9)
    t = make_table(12, model.row_width)
    whole_seen = 0
    for lo in range(0, 160, 40):
        sl = slice(lo, lo + 40)
        e = to_unit(compute_features(t, src[sl], dst[sl], src[sl], dst[sl], ts[sl], amt[sl]))
        nbr = rt.neighbour_ids(t, src[sl], dst[sl], ts[sl])
        whole_seen += int((t.mem[nbr, model.layout.kind] != NO_MESSAGE).sum())
        full = rt.score_batch(t, src[sl], dst[sl], ts[sl], e, ident)
        lead = rt.score_batch(t, src[sl], dst[sl], ts[sl], e, ident, lead_of=_lead_of(t, rt))
        np.testing.assert_array_equal(full.risk, lead.risk)
        np.testing.assert_array_equal(full.link_prob, lead.link_prob)
        np.testing.assert_array_equal(full.top_ids, lead.top_ids)
        np.testing.assert_array_equal(full.update.rows, lead.update.rows)
        rt.update_batch(t, full)
    assert whole_seen > 0  # neighbours with a pending message were read


def test_lead_of_output_is_checked(make_table, make_model, ident, ring_writer) -> None:
    model = make_model()
    rt = TGNRuntime(model, "cpu")
    t = make_table(4, model.row_width)
    ring_writer(t, 0, [(2, 1.0, 1.0, OUT), (3, 2.0, 1.0, OUT)])
    good = _lead_of(t, rt)
    args = (t, [0], [1], [5.0], np.zeros((1, 3)), ident)
    rt.score_batch(*args, lead_of=good)
    bad = {
        "float32 memory of shape": lambda ids: (good(ids)[0][:, :2], *good(ids)[1:]),
        "positions in": lambda ids: (good(ids)[0], np.array([5]), np.zeros((1, model.row_width), np.float32)),
        "non-finite memory": lambda ids: (np.full_like(good(ids)[0], np.nan), *good(ids)[1:]),
    }
    for msg, fn in bad.items():
        with pytest.raises(ValueError, match=msg):
            rt.score_batch(*args, lead_of=fn)
    t.mem[3, model.layout.kind] = 7.0  # a corrupt pending-message kind arrives as a whole row
    with pytest.raises(ValueError, match="corrupt node rows.*node 3"):
        rt.score_batch(*args, lead_of=_lead_of(t, rt))
