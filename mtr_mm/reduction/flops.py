"""Analytic FLOPs of Vim, following the live token count of every layer.

Convention (docs/flops.md): multiply-accumulates. The community number (Vim-T/S/B at 224:
1.45 / 5.08 / 18.87 G) counts ONE scan direction; ``directions=2`` counts both; ``directions=0``
counts no scan at all, only the projections in_proj + out_proj + patch embed + head: the number
VideoMamba's model zoo publishes (Ti/S/M/B at 224: 1.1 / 4.3 / 12.7 / 16.9 G; fvcore cannot see
the fused scan). Per layer with L tokens: in_proj L·C·2E, out_proj L·E·C; per direction: conv
L·E·K, x_proj L·E·(R+2N), dt_proj L·R·E, scan 9·L·E·N + L·E (D skip) + L·E (z gate). Plus patch
embed (per token in_channels·tubelet·patch²·C) and head. Plus the reducer's own overhead and,
for ``similarity`` restoration, its weights (recorded at every reduction) and the weighted sums
each full-resolution read-out computes.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence


@dataclass(frozen=True)
class VimDims:
    embed_dims: int
    depth: int
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int = 0
    patch_size: int = 16
    in_channels: int = 3
    num_classes: int = 1000
    tubelet_size: int = 1  # frames per token (video)

    @property
    def inner(self) -> int:
        return self.expand * self.embed_dims

    @classmethod
    def from_model(cls, model) -> 'VimDims':
        head = getattr(model.head, 'out_features', 0)
        return cls(embed_dims=model.embed_dims, depth=model.depth, d_state=model.d_state, d_conv=model.d_conv,
                   expand=model.expand, dt_rank=model.dt_rank, patch_size=model.patch_embed.patch_size,
                   in_channels=model.patch_embed.proj.in_channels, num_classes=head,
                   tubelet_size=model.patch_embed.tubelet_size or 1)


def scan_direction_flops(num_tokens: int, dims: VimDims) -> float:
    """One scan direction of one layer: conv, x_proj, dt_proj, scan, D skip and z gate."""
    L, E, N, R, K = num_tokens, dims.inner, dims.d_state, dims.dt_rank, dims.d_conv
    return L * E * K + L * E * (R + 2 * N) + L * R * E + 9 * L * E * N + 2 * L * E


def layer_flops(num_tokens: int, dims: VimDims, directions: int = 1) -> float:
    L, C, E = num_tokens, dims.embed_dims, dims.inner
    return L * C * 2 * E + L * E * C + directions * scan_direction_flops(num_tokens, dims)


def stem_head_flops(num_patches: int, dims: VimDims) -> float:
    patch = num_patches * dims.in_channels * dims.tubelet_size * dims.patch_size**2 * dims.embed_dims
    return patch + dims.embed_dims * dims.num_classes


def tokens_per_layer(num_tokens: int, depth: int, removed: Sequence[int]) -> List[int]:
    """Token count each layer runs on, when ``removed[i]`` tokens leave after layer i."""
    counts = []
    for i in range(depth):
        counts.append(num_tokens)
        num_tokens -= removed[i]
    return counts


def similarity_record_flops(removed: int, survivors: int, dims: VimDims) -> float:
    """Softmax-of-cosine weights of one removal (restore.similarity_weights): normalising the
    removed and surviving tokens, then their dot products; the softmax counts 0."""
    return float((removed + survivors) * dims.embed_dims + removed * survivors * dims.embed_dims)


def similarity_restore_flops(tokens: Sequence[int], removed: Sequence[int], before: int, dims: VimDims) -> float:
    """One full-resolution read-out with ``similarity`` restoration before layer ``before``: a
    weighted sum over the survivors for every token removed by then."""
    return float(sum(removed[k] * (tokens[k] - removed[k]) * dims.embed_dims for k in range(before) if removed[k]))


@dataclass
class FlopsReport:
    tokens: List[int]                  # tokens each layer runs on
    layers: List[float]                # per-layer FLOPs (the chosen convention)
    overhead: List[float]              # reduction overhead after each layer (restoration records included)
    stem_head: float
    directions: int
    restoration: float = 0.            # full-resolution read-outs (similarity restoration)

    @property
    def total(self) -> float:
        return sum(self.layers) + sum(self.overhead) + self.stem_head + self.restoration


def vim_flops(dims: VimDims, num_patches: int, num_tokens: int, removed: Optional[Sequence[int]] = None,
              reducer=None, directions: int = 1, reactivate_at: Optional[int] = None, restore: str = 'unmerge',
              restored_after: Sequence[int] = ()) -> FlopsReport:
    """FLOPs of a Vim forward in which ``removed[i]`` tokens leave after layer i (overhead from
    ``reducer.overhead_flops``). ``reactivate_at`` brings the full sequence back before that layer
    (no reduction may follow it); ``restored_after`` lists the layers whose output a dense head
    reads at full resolution (before that layer's own reduction), with restoration ``restore``."""
    removed = list(removed) if removed is not None else [0] * dims.depth
    tokens = tokens_per_layer(num_tokens, dims.depth, removed)
    if reactivate_at is not None:
        tokens[reactivate_at:] = [num_tokens] * (dims.depth - reactivate_at)
    overhead = [
        reducer.overhead_flops(tokens[i], removed[i], dims.embed_dims) if reducer is not None and removed[i] else 0.
        for i in range(dims.depth)
    ]
    restoration = 0.
    if restore == 'similarity':
        overhead = [o + similarity_record_flops(removed[i], tokens[i] - removed[i], dims) if removed[i] else o
                    for i, o in enumerate(overhead)]
        # Reactivation rebuilds hidden and residual; read-outs after it see the full sequence again.
        reads = [i for i in restored_after if reactivate_at is None or i < reactivate_at]
        reads += [reactivate_at] * 2 if reactivate_at is not None else []
        restoration = sum(similarity_restore_flops(tokens, removed, i, dims) for i in reads)
    return FlopsReport(tokens=tokens, layers=[layer_flops(n, dims, directions) for n in tokens],
                       overhead=overhead, stem_head=stem_head_flops(num_patches, dims), directions=directions,
                       restoration=restoration)
