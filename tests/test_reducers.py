"""The seven token reducers, through TokenState / apply_plan (CPU, deterministic)."""
import math
from dataclasses import replace

import numpy as np

import pytest
import torch

from mtr_mm.reduction import (REDUCERS, BaseReducer, ReductionPlan, TokenState, apply_plan,
                              build_reducer)
from mtr_mm.reduction.state import merge_factors, merge_into_survivors

NAMES = ('mtr', 'random', 'evit', 'tome', 'pumer', 'utr', 'hsa')
CONFIGS = [
    'mtr',
    dict(type='mtr', keep_ratio=0.0, similarity='block', merge_weights='mean'),
    dict(type='mtr', keep_ratio=0.9, delta_activation='none'),
    'random',
    dict(type='random', seed=7),
    'evit',
    dict(type='evit', fuse=False),
    'tome',
    'pumer',
    'utr',
    dict(type='utr', similarity='block', hidden_prune=0.0),
    dict(type='utr', hidden_prune=1.0),
    'hsa',
]
CHANNELS = 8


def cfg_id(cfg):
    if isinstance(cfg, str):
        return cfg
    return '-'.join(f'{v}' for v in cfg.values())


def is_merging(reducer):
    return reducer.__class__.__name__ in ('MTRReducer', 'ToMeReducer', 'PuMerReducer', 'UTRReducer') \
        or (reducer.__class__.__name__ == 'EViTReducer' and reducer.fuse)


def conserved_streams(reducer):
    """The streams a merge with token-size weights conserves, sum(size * x)."""
    name = reducer.__class__.__name__
    if name == 'MTRReducer':
        return ('hidden', 'residual') if reducer.merge_weights == 'size' else ()
    if name == 'UTRReducer':  # tokens pruned from the hidden stream take their mass with them
        return ('residual', ) if reducer.hidden_prune else ('hidden', 'residual')
    return ('hidden', 'residual') if name in ('ToMeReducer', 'PuMerReducer') else ()


def needs_score(reducer):
    return reducer.score_request is not None


def skip_refused(reducer, with_cls):
    if reducer.__class__.__name__ == 'EViTReducer' and not with_cls:
        pytest.skip('EViT refuses models without a class token (test_evit_needs_a_class_token)')


def make_state(batch=3, with_cls=True, seed=0, dtype=torch.float32, residual=True):
    """Vim-like sequence: a 4x4 grid, with the class token in the middle (L0=17) or dense (L0=16)."""
    gen = torch.Generator().manual_seed(seed)
    length = 17 if with_cls else 16
    hidden = torch.randn(batch, length, CHANNELS, generator=gen)
    state = TokenState.create(hidden.to(dtype), 8 if with_cls else None, (4, 4))
    if residual:
        state = replace(state, residual=torch.randn(batch, length, CHANNELS, generator=gen))
    return state


def random_delta(state, seed):
    gen = torch.Generator().manual_seed(1000 + seed)
    return torch.rand(state.positions.shape, generator=gen) + 0.05


def one_step(reducer, state, r, seed=0):
    delta = random_delta(state, seed) if needs_score(reducer) else None
    return apply_plan(state, reducer.plan(state, r, delta))


def slice_state(state, b):
    return replace(
        state, hidden=state.hidden[b:b + 1],
        residual=None if state.residual is None else state.residual[b:b + 1],
        positions=state.positions[b:b + 1], sizes=state.sizes[b:b + 1], source_map=state.source_map[b:b + 1],
        cls_index=None if state.cls_index is None else state.cls_index[b:b + 1])


def run_schedule(reducer, state, rs, mtr_first=False):
    """Several reducing steps; optionally an MTR step first so class-token indices differ per image."""
    if mtr_first:
        state = one_step(build_reducer('mtr'), state, 2, seed=99)
    for step, r in enumerate(rs):
        state = one_step(reducer, state, r, seed=step)
    return state


def check_invariants(reducer, start, state):
    batch, length0 = start.positions.shape
    length = state.num_tokens
    assert state.hidden.shape == (batch, length, CHANNELS)
    assert state.residual.shape == (batch, length, CHANNELS)
    assert state.positions.shape == state.sizes.shape == (batch, length)
    # Every original position maps to a valid token; a surviving position maps to itself.
    assert state.source_map.shape == (batch, length0)
    assert int(state.source_map.min()) >= 0 and int(state.source_map.max()) < length
    for b in range(batch):
        own = {int(p): i for i, p in enumerate(state.positions[b])}
        assert len(own) == length                                   # no duplicated positions
        for p in range(length0):
            if p in own:
                assert int(state.source_map[b, p]) == own[p]
            elif start.cls_position is not None:
                assert int(state.source_map[b, p]) != int(state.cls_index[b])  # cls stands for no one
    # Class token: never removed, never merged, index tracked.
    if start.cls_position is not None:
        assert torch.equal(state.positions.gather(1, state.cls_index[:, None])[:, 0],
                           torch.full((batch, ), start.cls_position))
        assert torch.equal(state.read_cls(state.hidden), start.read_cls(start.hidden))
        assert torch.equal(state.read_cls(state.residual), start.read_cls(start.residual))
        assert torch.equal(state.sizes.gather(1, state.cls_index[:, None]), torch.ones(batch, 1))
    else:
        assert state.cls_index is None
    if reducer.preserves_order:
        assert bool((state.positions[:, 1:] > state.positions[:, :-1]).all())
    if is_merging(reducer):
        assert torch.equal(state.sizes.sum(1), torch.full((batch, ), float(length0)))
        counts = torch.stack([torch.bincount(m, minlength=length) for m in state.source_map]).float()
        assert torch.equal(counts, state.sizes)
    else:
        assert torch.equal(state.sizes, torch.ones_like(state.sizes))
    for name in conserved_streams(reducer):
        mass = (getattr(state, name).float() * state.sizes[..., None]).sum(1)
        torch.testing.assert_close(mass, getattr(start, name).float().sum(1), atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------------------- registry
def test_registry_and_build():
    for name in NAMES:
        assert name in REDUCERS.module_dict
        reducer = build_reducer(name)
        assert isinstance(reducer, BaseReducer)
        assert build_reducer(dict(type=name)).__class__ is reducer.__class__
        assert build_reducer(reducer) is reducer
        assert isinstance(reducer.preserves_order, bool)
    requests = {name: build_reducer(name).score_request for name in NAMES}
    assert requests == dict(mtr='delta_softplus', random=None, evit=None, tome=None, pumer=None, utr='y_clip',
                            hsa='y_clip')
    assert build_reducer(dict(type='mtr', delta_activation='none')).score_request == 'delta'
    assert not build_reducer('tome').preserves_order
    assert all(build_reducer(n).preserves_order for n in NAMES if n != 'tome')
    with pytest.raises(ValueError, match="registered reducers: .*'mtr'"):
        build_reducer('nope')
    with pytest.raises(ValueError, match='keep_ratio'):
        build_reducer(dict(type='mtr', keep_ratio=2.0))
    assert repr(build_reducer('mtr')) == ("MTRReducer(keep_ratio=0.75, similarity='block', merge_weights='mean', "
                                          "delta_activation='softplus')")  # chosen on val: docs/benchmarks.md §3


# ------------------------------------------------------------------------------ generic properties
@pytest.mark.parametrize('with_cls', [True, False], ids=['cls', 'dense'])
@pytest.mark.parametrize('cfg', CONFIGS, ids=cfg_id)
def test_r_zero_is_identity(cfg, with_cls):
    reducer = build_reducer(cfg)
    skip_refused(reducer, with_cls)
    state = make_state(with_cls=with_cls)
    plan = reducer.plan(state, 0, random_delta(state, 0) if needs_score(reducer) else None)
    assert plan.source.shape == plan.target.shape == (3, 0)
    assert apply_plan(state, plan) is state
    assert reducer.overhead_flops(17, 0, CHANNELS) == 0.0


@pytest.mark.parametrize('with_cls', [True, False], ids=['cls', 'dense'])
@pytest.mark.parametrize('cfg', CONFIGS, ids=cfg_id)
def test_invariants_over_a_schedule(cfg, with_cls):
    reducer = build_reducer(cfg)
    skip_refused(reducer, with_cls)
    start = make_state(with_cls=with_cls)
    state = start
    for step, r in enumerate([3, 2, 4]):
        length = state.num_tokens
        state = one_step(reducer, state, r, seed=step)
        assert state.num_tokens == length - r
        check_invariants(reducer, start, state)


@pytest.mark.parametrize('mtr_first', [False, True], ids=['plain', 'after-mtr'])
@pytest.mark.parametrize('with_cls', [True, False], ids=['cls', 'dense'])
@pytest.mark.parametrize('cfg', CONFIGS, ids=cfg_id)
def test_batch_invariance_and_determinism(cfg, with_cls, mtr_first):
    reducer = build_reducer(cfg)
    skip_refused(reducer, with_cls)
    start = make_state(with_cls=with_cls, seed=3)
    batched = run_schedule(reducer, start, [3, 4], mtr_first)
    again = run_schedule(build_reducer(cfg), start, [3, 4], mtr_first)
    for name in ('positions', 'sizes', 'source_map', 'hidden', 'residual'):
        assert torch.equal(getattr(batched, name), getattr(again, name)), name
    assert (batched.cls_index is None) == (not with_cls)
    if with_cls:
        assert torch.equal(batched.cls_index, again.cls_index)
    for b in range(start.positions.shape[0]):
        # The delta scores of a batch are a function of the whole batch here: slice them per image.
        alone_start = slice_state(start, b)
        alone = alone_start
        if mtr_first:
            delta = random_delta(start, 99)[b:b + 1]
            alone = apply_plan(alone, build_reducer('mtr').plan(alone, 2, delta))
        for step, r in enumerate([3, 4]):
            template = replace(start, positions=torch.zeros(3, alone.num_tokens, dtype=torch.long))
            delta = random_delta(template, step)[b:b + 1] if needs_score(reducer) else None
            alone = apply_plan(alone, reducer.plan(alone, r, delta))
        mine = slice_state(batched, b)
        for name in ('positions', 'sizes', 'source_map'):
            assert torch.equal(getattr(alone, name), getattr(mine, name)), name
        if with_cls:
            assert torch.equal(alone.cls_index, mine.cls_index)
        torch.testing.assert_close(alone.hidden, mine.hidden)
        torch.testing.assert_close(alone.residual, mine.residual)


@pytest.mark.parametrize('with_cls', [True, False], ids=['cls', 'dense'])
@pytest.mark.parametrize('cfg', CONFIGS, ids=cfg_id)
def test_limits(cfg, with_cls):
    reducer = build_reducer(cfg)
    skip_refused(reducer, with_cls)
    state = make_state(with_cls=with_cls)
    limit = reducer.max_r(state.num_tokens, with_cls)
    assert limit >= 1
    end = one_step(reducer, state, limit)                      # the limit itself works
    assert end.num_tokens == state.num_tokens - limit
    check_invariants(reducer, state, end)
    delta = random_delta(state, 0) if needs_score(reducer) else None
    with pytest.raises(ValueError, match=f'limit is r <= {limit}'):
        reducer.plan(state, limit + 1, delta)
    with pytest.raises(ValueError, match='r must be'):
        reducer.plan(state, -1, delta)
    with pytest.raises(ValueError, match='r must be a non-negative int'):
        reducer.plan(state, 2.0, delta)
    assert reducer.plan(state, np.int64(2), delta).source.shape == (3, 2)
    assert reducer.plan(state, torch.tensor(2), delta).source.shape == (3, 2)


@pytest.mark.parametrize('cfg', CONFIGS, ids=cfg_id)
def test_down_to_the_limit_repeatedly(cfg):
    """Reduce as far as each step allows until nothing can leave: small-L edge cases."""
    reducer = build_reducer(cfg)
    for with_cls in (True, False) if reducer.__class__.__name__ != 'EViTReducer' else (True, ):
        start = make_state(batch=2, with_cls=with_cls, seed=5)
        state = run_schedule(build_reducer('mtr'), start, [2], mtr_first=False) if with_cls else start
        while True:
            limit = reducer.max_r(state.num_tokens, with_cls)
            if limit == 0:
                break
            state = one_step(reducer, state, max(1, limit // 2), seed=state.num_tokens)
        assert state.num_tokens <= 4
        if with_cls:
            assert torch.equal(state.read_cls(state.hidden), start.read_cls(start.hidden))


@pytest.mark.parametrize('cfg', CONFIGS, ids=cfg_id)
def test_bfloat16_hidden(cfg):
    reducer = build_reducer(cfg)
    state = make_state(dtype=torch.bfloat16)
    out = one_step(reducer, state, 5)
    assert out.hidden.dtype == torch.bfloat16 and out.residual.dtype == torch.float32
    assert out.num_tokens == 12


def test_overhead_flops():
    length, r, channels = 197, 10, 192
    survivors = length - r
    num_target = survivors - math.floor(0.75 * survivors)  # the default keep_ratio
    expected = 2 * length * 2 * channels + (r + num_target) * channels + r * num_target * channels
    assert build_reducer(dict(type='mtr', similarity='hidden')).overhead_flops(length, r, channels) == expected
    block = build_reducer('mtr').overhead_flops(length, r, channels)  # the default similarity: 'block'
    assert block == expected + (r + num_target) * channels
    assert build_reducer('random').overhead_flops(length, r, channels) == 0.0
    assert build_reducer('evit').overhead_flops(length, r, channels) == 2 * length * channels
    bipartite = length * channels + 99 * 98 * channels
    assert build_reducer('tome').overhead_flops(length, r, channels) == bipartite
    assert build_reducer('pumer').overhead_flops(length, r, channels) == bipartite
    utr = 2 * length * 2 * channels + length * channels + 98 * 99 * channels
    assert build_reducer('utr').overhead_flops(length, r, channels) == utr
    assert build_reducer(dict(type='utr', similarity='block')).overhead_flops(length, r, channels) == \
        utr + length * channels
    assert build_reducer('hsa').overhead_flops(length, r, channels) == 2 * length * 2 * channels


# -------------------------------------------------------------------------------- MTR vs reference
def cosine64(a, b):
    return float((a * b).sum() / (a.norm() * b.norm()))


def mtr_reference(hidden, residual, sizes, scores, cls_pos, r, keep_ratio, similarity, merge_weights):
    """Plain python over one image, float64. Returns the groups, the assignment and the result."""
    length = len(scores)
    non_cls = sorted((i for i in range(length) if i != cls_pos), key=lambda i: (float(scores[i]), i))
    sources, rest = non_cls[:r], non_cls[r:]
    num_keep = math.floor(keep_ratio * len(rest))
    targets, keeps = rest[:len(rest) - num_keep], rest[len(rest) - num_keep:]
    feats = hidden if similarity == 'hidden' else hidden + residual
    joins = {}
    for s in sources:
        best, best_sim = None, -math.inf
        for t in targets:                           # first maximum wins
            sim = cosine64(feats[s], feats[t])
            if sim > best_sim:
                best, best_sim = t, sim
        joins[s] = best
    survivors = sorted([cls_pos] + rest)            # original positions = indices here
    out_h, out_res, out_sizes = [], [], []
    for t in survivors:
        members = [t] + [s for s in sources if joins[s] == t]
        w = [float(sizes[m]) if merge_weights == 'size' else 1.0 for m in members]
        out_h.append(sum(wi * hidden[m] for wi, m in zip(w, members)) / sum(w))
        out_res.append(sum(wi * residual[m] for wi, m in zip(w, members)) / sum(w))
        out_sizes.append(sum(float(sizes[m]) for m in members))
    return dict(sources=sources, targets=targets, keeps=keeps, joins=joins, order=survivors,
                hidden=torch.stack(out_h), residual=torch.stack(out_res), sizes=out_sizes,
                cls_index=survivors.index(cls_pos))


@pytest.mark.parametrize('keep_ratio,similarity,merge_weights', [
    (0.5, 'hidden', 'size'), (0.3, 'block', 'mean'), (0.0, 'hidden', 'mean'), (0.9, 'block', 'size')])
def test_mtr_matches_reference(keep_ratio, similarity, merge_weights):
    gen = torch.Generator().manual_seed(11)
    batch, length, cls_pos, r = 2, 9, 4, 3
    hidden = torch.randn(batch, length, CHANNELS, generator=gen)
    residual = torch.randn(batch, length, CHANNELS, generator=gen)
    sizes = torch.tensor([[1., 2, 1, 3, 1, 1, 2, 1, 1], [2., 1, 1, 1, 1, 4, 1, 1, 2]])
    scores = torch.rand(batch, length, generator=gen)
    scores[1, 2] = scores[1, 6]                                # a tie: lower index leaves first
    state = replace(TokenState.create(hidden, cls_pos, (2, 4)), residual=residual, sizes=sizes)
    reducer = build_reducer(dict(type='mtr', keep_ratio=keep_ratio, similarity=similarity,
                                 merge_weights=merge_weights))
    plan = reducer.plan(state, r, scores)
    out = apply_plan(state, plan)
    for b in range(batch):
        ref = mtr_reference(hidden[b].double(), residual[b].double(), sizes[b], scores[b], cls_pos, r,
                            keep_ratio, similarity, merge_weights)
        assert plan.source[b].tolist() == ref['sources']
        assert plan.target[b].tolist() == [ref['joins'][s] for s in ref['sources']]
        assert set(plan.target[b].tolist()) <= set(ref['targets'])
        assert sorted(plan.keep[b].tolist()) == sorted([cls_pos] + ref['targets'] + ref['keeps'])
        assert plan.keep[b].tolist() == ref['order']
        assert out.positions[b].tolist() == ref['order']
        assert out.sizes[b].tolist() == ref['sizes']
        assert int(out.cls_index[b]) == ref['cls_index']
        torch.testing.assert_close(out.hidden[b].double(), ref['hidden'], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.residual[b].double(), ref['residual'], atol=1e-5, rtol=1e-5)
        num_keep = math.floor(keep_ratio * (length - 1 - r))
        assert len(ref['keeps']) == num_keep and len(ref['targets']) == length - 1 - r - num_keep
    # The tie: token 2 and token 6 of image 1 have equal scores; if either leaves, 2 leaves first.
    src1 = plan.source[1].tolist()
    assert not (6 in src1 and 2 not in src1)


@pytest.mark.parametrize('name', ['mtr', 'utr', 'hsa'])
def test_scored_methods_need_their_score(name):
    state = make_state()
    reducer = build_reducer(name)
    with pytest.raises(ValueError, match=f"needs the per-token score '{reducer.score_request}'"):
        reducer.plan(state, 2)
    with pytest.raises(ValueError, match='shape'):
        reducer.plan(state, 2, torch.rand(3, 16))


# --------------------------------------------------------------------- the baselines vs references
def test_tome_and_pumer_reference():
    gen = torch.Generator().manual_seed(21)
    batch, length, r = 2, 9, 3
    hidden = torch.randn(batch, length, CHANNELS, generator=gen)
    residual = torch.randn(batch, length, CHANNELS, generator=gen)
    cls_pos = 4                                              # even: lives in set A, protected
    state = replace(TokenState.create(hidden, cls_pos, (2, 4)), residual=residual)
    tome = build_reducer('tome').plan(state, r)
    pumer = build_reducer('pumer').plan(state, r)
    for b in range(batch):
        set_a = [i for i in range(0, length, 2)]
        set_b = [i for i in range(1, length, 2)]
        edges = []
        for a in set_a:
            if a == cls_pos:
                continue
            best = max(set_b, key=lambda j: (cosine64(hidden[b, a].double(), hidden[b, j].double()), -j))
            edges.append((cosine64(hidden[b, a].double(), hidden[b, best].double()), a, best))
        edges.sort(key=lambda e: (-e[0], e[1]))
        chosen = edges[:r]
        assert tome.source[b].tolist() == [a for _, a, _ in chosen]
        assert tome.target[b].tolist() == [t for _, _, t in chosen]
        unmerged = [a for a in set_a if a not in tome.source[b].tolist()]
        assert tome.keep[b].tolist() == unmerged + set_b         # [unmerged A, B], cls in its place
        assert torch.equal(pumer.source, tome.source) and torch.equal(pumer.target, tome.target)
        assert pumer.keep[b].tolist() == sorted(unmerged + set_b)
    out = apply_plan(state, tome)
    for b in range(batch):                                     # the cls stays in its place in set A
        assert int(out.cls_index[b]) == tome.keep[b].tolist().index(cls_pos)
        assert int(out.positions[b, out.cls_index[b]]) == cls_pos


@pytest.mark.parametrize('hidden_prune,similarity', [(0.5, 'hidden'), (0.0, 'block'), (1.0, 'hidden')])
def test_utr_reference(hidden_prune, similarity):
    """ToR-SSM's hybrid reduction, recomputed in float64 python: importance = the given clip(y)
    score, less/more-important halves, the r most similar pairs leave; the residual merges all of
    them, the hidden stream prunes the least important round(hidden_prune * r) and merges the rest."""
    gen = torch.Generator().manual_seed(31)
    batch, length, cls_pos, r = 2, 10, 5, 3
    hidden = torch.randn(batch, length, CHANNELS, generator=gen)
    residual = torch.randn(batch, length, CHANNELS, generator=gen)
    score = torch.rand(batch, length, generator=gen)
    sizes = torch.tensor([[1., 2, 1, 1, 3, 1, 1, 2, 1, 1]]).expand(batch, -1)
    state = replace(TokenState.create(hidden, cls_pos, (3, 3)), residual=residual, sizes=sizes)
    plan = build_reducer(dict(type='utr', hidden_prune=hidden_prune, similarity=similarity)).plan(state, r, score)
    out = apply_plan(state, plan)
    num_pruned = math.floor(hidden_prune * r + 0.5)
    for b in range(batch):
        feats = (hidden[b] + residual[b] if similarity == 'block' else hidden[b]).double()
        ranked = sorted((i for i in range(length) if i != cls_pos), key=lambda i: (float(score[b, i]), i))
        less, more = ranked[:len(ranked) // 2], ranked[len(ranked) // 2:]
        edges = []
        for position, s in enumerate(less):
            best = max(more, key=lambda t: (cosine64(feats[s], feats[t]), -more.index(t)))
            edges.append((cosine64(feats[s], feats[best]), position, s, best))
        edges.sort(key=lambda e: (-e[0], e[1]))
        sources, joins = [s for _, _, s, _ in edges[:r]], {s: t for _, _, s, t in edges[:r]}
        assert plan.source[b].tolist() == sources
        pruned = sorted(sources, key=lambda s: (float(score[b, s]), sources.index(s)))[:num_pruned]
        kept = [i for i in range(length) if i not in sources]
        assert out.positions[b].tolist() == kept
        for at, t in enumerate(kept):
            members = [t] + [s for s in sources if joins[s] == t]
            w = [float(sizes[b, m]) for m in members]
            expected_res = sum(wi * residual[b, m].double() for wi, m in zip(w, members)) / sum(w)
            merged = [(wi, m) for wi, m in zip(w, members) if m not in pruned]
            expected_hid = sum(wi * hidden[b, m].double() for wi, m in merged) / sum(wi for wi, _ in merged)
            torch.testing.assert_close(out.residual[b, at].double(), expected_res, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.hidden[b, at].double(), expected_hid, atol=1e-5, rtol=1e-5)
            assert float(out.sizes[b, at]) == sum(w)


@pytest.mark.parametrize('name', ['utr', 'hsa'])
def test_utr_and_hsa_rank_by_the_clipped_y_not_the_streams(name):
    """The finding behind ToR-SSM / ToP-ViM scores: a large residual of opposite sign (3-45x the
    hidden on real models) dominated our former stream-based importance. The less important tokens
    must be those of the mixer's clip(y) score, whatever the streams hold."""
    gen = torch.Generator().manual_seed(8)
    batch, length, cls_pos, r = 2, 17, 8, 4
    hidden = torch.rand(batch, length, CHANNELS, generator=gen)
    clip_y = hidden.sum(-1)                                    # the score agrees with the hidden ...
    state = replace(TokenState.create(hidden, cls_pos, (4, 4)), residual=-40 * hidden)  # ... not the residual
    plan = build_reducer(name).plan(state, r, clip_y)
    for b in range(batch):
        ranked = sorted((i for i in range(length) if i != cls_pos), key=lambda i: (float(clip_y[b, i]), i))
        if name == 'hsa':
            assert plan.source[b].tolist() == ranked[:r]
        else:  # the leaving tokens come from the less-important half of clip(y)
            assert set(plan.source[b].tolist()) <= set(ranked[:len(ranked) // 2])


def grid_distance(a, b, cls_pos, width):
    """Squared distance on the patch grid between original sequence positions a and b."""
    pa, pb = (p - (cls_pos is not None and p > cls_pos) for p in (a, b))
    return (pa // width - pb // width) ** 2 + (pa % width - pb % width) ** 2


@pytest.mark.parametrize('with_cls', [True, False], ids=['cls', 'dense'])
def test_hsa_and_random_pruning_reference(with_cls):
    gen = torch.Generator().manual_seed(41)
    batch, r, width = 2, 4, 5
    cls_pos = 5 if with_cls else None
    length = 10 + int(with_cls)
    hidden = torch.randn(batch, length, CHANNELS, generator=gen)
    score = torch.rand(batch, length, generator=gen)
    state = replace(TokenState.create(hidden, cls_pos, (2, width)),
                    residual=torch.randn(batch, length, CHANNELS, generator=gen))
    for name in ('hsa', 'random'):
        plan = build_reducer(name).plan(state, r, score)
        assert not plan.merge
        for b in range(batch):
            source = plan.source[b].tolist()
            if name == 'hsa':
                ranked = sorted((i for i in range(length) if i != cls_pos), key=lambda i: (float(score[b, i]), i))
                assert source == ranked[:r]
            kept = [i for i in range(length) if i not in source]
            assert plan.keep[b].tolist() == kept and cls_pos not in source
            candidates = [i for i in kept if i != cls_pos]
            for s, t in zip(source, plan.target[b].tolist()):  # nearest on the grid, ties: the earliest
                assert t == min(candidates, key=lambda c: (grid_distance(c, s, cls_pos, width), c))
    # random: same choice for every image (seed-derived), reproducible, different for another seed.
    plan = build_reducer('random').plan(state, r)
    assert torch.equal(plan.source[0], plan.source[1])
    assert torch.equal(plan.source, build_reducer('random').plan(state, r).source)
    others = [build_reducer(dict(type='random', seed=s)).plan(state, r).source for s in range(1, 6)]
    assert any(not torch.equal(o, plan.source) for o in others)


def test_restoration_never_reads_across_a_row_end():
    """A pruned token at the start of a row is represented by its neighbour below or beside it,
    never by the last token of the previous row (its neighbour in 1-D sequence order)."""
    width = 4
    state = TokenState.create(torch.zeros(1, 16, CHANNELS), None, (4, width))
    score = torch.ones(1, 16)
    score[0, [4, 5]] = 0                                      # (1, 0) and (1, 1) leave
    plan = build_reducer('hsa').plan(state, 2, score)
    assert plan.source[0].tolist() == [4, 5]
    assert plan.target[0].tolist() == [0, 1]                  # the tokens above them; 1-D would give 3 for 4


def test_evit_needs_a_class_token():
    state = make_state(with_cls=False)
    with pytest.raises(ValueError, match='EViT needs a class token'):
        build_reducer('evit').plan(state, 2)


def test_evit_reference():
    gen = torch.Generator().manual_seed(51)
    batch, length, r, cls_pos = 2, 10, 3, 5
    hidden = torch.randn(batch, length, CHANNELS, generator=gen)
    residual = torch.randn(batch, length, CHANNELS, generator=gen)
    sizes = torch.tensor([[1., 2, 1, 1, 3, 1, 1, 2, 1, 1]]).expand(batch, -1)
    state = replace(TokenState.create(hidden, cls_pos, (3, 3)), residual=residual, sizes=sizes)
    plan = build_reducer('evit').plan(state, r)
    out = apply_plan(state, plan)
    for b in range(batch):
        h = hidden[b].double()
        score = [cosine64(h[i], h[cls_pos]) for i in range(length)]
        ranked = sorted((i for i in range(length) if i != cls_pos), key=lambda i: (score[i], i))
        dropped, carrier = ranked[:r + 1], ranked[r]
        assert plan.source[b].tolist() == ranked[:r]
        assert plan.target[b].tolist() == [carrier] * r
        kept = sorted(i for i in range(length) if i not in ranked[:r])
        assert out.positions[b].tolist() == kept
        w = [max((1 + score[i]) / 2, 1e-6) * float(sizes[b, i]) for i in dropped]
        fused_h = sum(wi * h[i] for wi, i in zip(w, dropped)) / sum(w)
        fused_r = sum(wi * residual[b, i].double() for wi, i in zip(w, dropped)) / sum(w)
        at = kept.index(carrier)
        torch.testing.assert_close(out.hidden[b, at].double(), fused_h, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.residual[b, at].double(), fused_r, atol=1e-5, rtol=1e-5)
        assert float(out.sizes[b, at]) == sum(float(sizes[b, i]) for i in dropped)


# ------------------------------------------------------------------------------------ bad knobs
@pytest.mark.parametrize('cfg,match', [
    (dict(type='mtr', keep_ratio=1.0), r'keep_ratio must be a number in \[0, 1\)'),
    (dict(type='mtr', keep_ratio=-0.1), r'keep_ratio must be a number in \[0, 1\)'),
    (dict(type='mtr', keep_ratio='half'), r'keep_ratio must be a number in \[0, 1\)'),
    (dict(type='mtr', similarity='cosine'), r"similarity must be one of \['hidden', 'block'\]"),
    (dict(type='mtr', merge_weights='max'), r"merge_weights must be one of \['size', 'mean'\]"),
    (dict(type='mtr', delta_activation='relu'), r"delta_activation must be one of \['softplus', 'none'\]"),
    (dict(type='random', seed=-1), 'seed must be a non-negative int'),
    (dict(type='random', seed=1.5), 'seed must be a non-negative int'),
    (dict(type='evit', fuse='yes'), 'fuse must be True or False'),
    (dict(type='utr', similarity='residual'), r"similarity must be one of \['hidden', 'block'\]"),
    (dict(type='utr', hidden_prune=1.5), r'hidden_prune must be a number in \[0, 1\]'),
    (dict(type='utr', hidden_prune=True), r'hidden_prune must be a number in \[0, 1\]'),
])
def test_bad_knobs(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_reducer(cfg)


def test_plan_is_a_reduction_plan():
    state = make_state()
    for name in NAMES:
        reducer = build_reducer(name)
        plan = reducer.plan(state, 4, random_delta(state, 0) if needs_score(reducer) else None)
        assert isinstance(plan, ReductionPlan)
        assert plan.keep.shape == (3, 13) and plan.source.shape == plan.target.shape == (3, 4)
        assert plan.keep.dtype == plan.source.dtype == plan.target.dtype == torch.long
        # keep and source partition the tokens; targets are survivors (never the class token)
        for b in range(3):
            assert sorted(plan.keep[b].tolist() + plan.source[b].tolist()) == list(range(17))
            assert set(plan.target[b].tolist()) <= set(plan.keep[b].tolist()) - {8}


@pytest.mark.parametrize('name', ['mtr', 'hsa', 'evit', 'utr'])
def test_ties_break_by_index(name):
    """Equal scores everywhere (long sequence, where an unstable sort would scramble them): the
    lowest current indices leave first, identically for every image."""
    batch, length, cls_pos, r = 2, 301, 150, 40
    hidden = torch.ones(batch, length, CHANNELS)
    state = replace(TokenState.create(hidden, cls_pos, (15, 20)),
                    residual=torch.zeros(batch, length, CHANNELS))
    reducer = build_reducer(name)
    plan = reducer.plan(state, r, torch.ones(batch, length) if needs_score(reducer) else None)
    assert plan.source[0].tolist() == list(range(r))
    # utr: the first more-important token (151, after the cls); mtr: token 40, the first Target;
    # evit: 40, the carrier of the fused token; hsa: the nearest survivor on the 15 x 20 grid, the
    # token of row 2 below each pruned token of rows 0 and 1.
    expected = dict(utr=[151] * r, mtr=[40] * r, evit=[40] * r, hsa=[40 + s % 20 for s in range(r)])
    assert plan.target[0].tolist() == expected[name]
    assert torch.equal(plan.source[0], plan.source[1]) and torch.equal(plan.target[0], plan.target[1])


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_merge_into_survivors_is_the_weighted_mean_and_leaves_other_rows_bit_exact(dtype):
    gen = torch.Generator().manual_seed(5)
    kept = torch.randn(2, 6, 4, generator=gen).to(dtype)
    sources = torch.randn(2, 3, 4, generator=gen).to(dtype)
    kept_weights = torch.tensor([[1., 3, 2, 1, 7, 1], [2., 1, 1, 5, 1, 3]])
    source_weights = torch.tensor([[2., 1, 4], [1., 3, 0]])   # a weight-0 source (pruned) changes nothing
    target = torch.tensor([[1, 1, 4], [0, 5, 2]])
    # the weights as merge_factors sees them: per token before the step, survivors first, then sources
    weights = torch.cat([kept_weights, source_weights], dim=1)
    keep, source = torch.arange(6).expand(2, 6), torch.arange(6, 9).expand(2, 3)
    merged = merge_into_survivors(kept, sources, merge_factors(weights, keep, source, target), target)
    assert merged.dtype == dtype
    for b in range(2):
        for t in range(6):
            joins = [s for s in range(3) if target[b, s] == t and source_weights[b, s] > 0]
            if not joins:
                assert torch.equal(merged[b, t], kept[b, t])
                continue
            w = [float(kept_weights[b, t])] + [float(source_weights[b, s]) for s in joins]
            rows = [kept[b, t].double()] + [sources[b, s].double() for s in joins]
            expected = sum(wi * x for wi, x in zip(w, rows)) / sum(w)
            tolerance = 1e-6 if dtype == torch.float32 else 8e-3  # bf16: the result's own rounding
            assert torch.allclose(merged[b, t].double(), expected, rtol=tolerance, atol=tolerance)


def test_random_draws_its_keys_once_per_length_and_device():
    """A CUDA-graph capture may not draw on the CPU or copy to the GPU: after the first plan at a
    token count, later plans at that count read the keys already on the device."""
    reducer = build_reducer(dict(type='random', seed=5))
    state = make_state()
    first = reducer.plan(state, 4)
    assert repr(reducer) == 'RandomReducer(seed=5)'  # the cache is not an option

    def no_draw(num_tokens):
        raise AssertionError('keys drawn again')

    reducer.keys = no_draw
    again = reducer.plan(state, 4)
    assert torch.equal(first.keep, again.keep) and torch.equal(first.source, again.source)
