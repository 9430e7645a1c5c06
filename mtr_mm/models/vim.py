"""Vision Mamba (Vim), the official network (hustvl/Vim, ICML 2024), with a token-reduction hook.

Parameter names and shapes are exactly the official ones, so official state_dicts load with
``strict=True`` into :class:`VisionMamba`. This is the ONE forward used by classification,
segmentation, detection and video: task wrappers only choose what to read from the token state.

VideoMamba (OpenGVLab, ECCV 2024) is the same network with three arguments set differently
(docs/videomamba.md): the class token at the front (``cls_token_position='front'``), the two scan
directions summed instead of averaged (``direction_merge='sum'``) and, for video, a tubelet patch
embedding with a temporal position embedding (``num_frames``, ``tubelet_size``).
"""
import math
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import add_rms_norm, causal_conv1d, rms_norm, selective_scan
from ..reduction.engine import build_reduction
from ..reduction.flops import FlopsReport, VimDims, vim_flops
from ..reduction.scores import clipped_y_score, mean_delta_score
from ..reduction.state import TokenState
from .cuda_graph import CUDAGraphForward

# The released models (../docs/models.md, ../docs/videomamba.md): width and depth per size name, and
# for VideoMamba the two forward differences from Vim.
VIDEOMAMBA = dict(cls_token_position='front', direction_merge='sum')
VIM_ARCH = {
    'tiny': dict(embed_dims=192, depth=24),
    'small': dict(embed_dims=384, depth=24),
    'base': dict(embed_dims=768, depth=24),
    'videomamba_tiny': dict(embed_dims=192, depth=24, **VIDEOMAMBA),
    'videomamba_small': dict(embed_dims=384, depth=24, **VIDEOMAMBA),
    'videomamba_middle': dict(embed_dims=576, depth=32, **VIDEOMAMBA),
    'videomamba_base': dict(embed_dims=768, depth=24, **VIDEOMAMBA),
}


class RMSNorm(nn.Module):

    def __init__(self, dims: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dims))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (training only)."""

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class ScanBranch(NamedTuple):
    """Parameters of one scan direction. The mixer registers both directions under their official
    names (the backward ones carry a `_b`); this is only a view grouping one direction's."""
    conv1d: nn.Conv1d
    x_proj: nn.Linear
    dt_proj: nn.Linear
    A_log: nn.Parameter
    D: nn.Parameter


class BiMambaMixer(nn.Module):
    """Bidirectional Mamba ("bimamba v2"): one in_proj, a forward and a backward scan branch with
    their own parameters, outputs merged and projected back.

    Args:
        direction_merge: 'mean' (Vim: the two directions' outputs averaged) or 'sum' (VideoMamba).
    """

    def __init__(self, dims: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: Optional[int] = None, dt_min: float = 1e-3, dt_max: float = 0.1,
                 direction_merge: str = 'mean'):
        super().__init__()
        if direction_merge not in ('mean', 'sum'):
            raise ValueError(f"direction_merge must be 'mean' (Vim) or 'sum' (VideoMamba), got {direction_merge!r}")
        self.direction_merge = direction_merge
        inner = expand * dims
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(dims / 16)
        # Registration order follows the official module, so state_dict() lists keys in its order.
        self.in_proj = nn.Linear(dims, 2 * inner, bias=False)
        for suffix in ('', '_b'):
            setattr(self, f'conv1d{suffix}',
                    nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1, bias=True))
            setattr(self, f'x_proj{suffix}', nn.Linear(inner, self.dt_rank + 2 * d_state, bias=False))
            setattr(self, f'dt_proj{suffix}', nn.Linear(self.dt_rank, inner, bias=True))
            # Official name quirk: the backward A is `A_b_log`, not `A_log_b`.
            a_name = 'A_log' if suffix == '' else 'A_b_log'
            setattr(self, a_name, nn.Parameter(torch.empty(inner, d_state)))
            setattr(self, f'D{suffix}', nn.Parameter(torch.empty(inner)))
        self.out_proj = nn.Linear(inner, dims, bias=False)
        self._dt_range = (dt_min, dt_max)
        self.reset_parameters()

    def reset_parameters(self):
        """Mamba's initialisation: S4D-real A, dt log-uniform in [dt_min, dt_max], D = 1."""
        inner, state = self.A_log.shape
        dt_min, dt_max = self._dt_range
        for suffix, a_name in (('', 'A_log'), ('_b', 'A_b_log')):
            with torch.no_grad():
                a = torch.arange(1, state + 1, dtype=torch.float32).repeat(inner, 1)
                getattr(self, a_name).copy_(a.log())
                getattr(self, f'D{suffix}').fill_(1.)
                dt_proj = getattr(self, f'dt_proj{suffix}')
                nn.init.uniform_(dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
                dt = torch.exp(torch.rand(inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
                dt = dt.clamp(min=1e-4)
                dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def branch(self, backward: bool) -> ScanBranch:
        s = '_b' if backward else ''
        return ScanBranch(getattr(self, f'conv1d{s}'), getattr(self, f'x_proj{s}'), getattr(self, f'dt_proj{s}'),
                          self.A_b_log if backward else self.A_log, getattr(self, f'D{s}'))

    def scan(self, xz: Tensor, branch: ScanBranch, score_request: Optional[str]):
        """One direction on the channel-major (2E, B, L) in_proj output. Returns the gated y as
        (E, B, L) and, when asked, the per-token score (B, L) a reducer requested
        (``mtr_mm.reduction.scores``): mean Δ over inner channels (MTR) or mean clipped ungated y
        (the ToR-SSM / ToP-ViM papers' importance), in this direction's token order.

        Channel-major is the layout mamba-ssm's fused inner function keeps: the kernels read their
        (B, E, L) operands as views of it (unit stride along L), and every projection is one plain
        matrix product on (channels, B*L) matrices, so no transpose is ever copied."""
        inner, batch, length = xz.shape[0] // 2, xz.shape[1], xz.shape[2]
        x, z = xz.chunk(2, dim=0)
        u = causal_conv1d(x.transpose(0, 1), branch.conv1d.weight, branch.conv1d.bias, activation='silu')
        x_dbl = branch.x_proj.weight @ u.transpose(0, 1).reshape(inner, batch * length)
        dt_low, b, c = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=0)
        delta = (branch.dt_proj.weight @ dt_low).view(inner, batch, length)  # bias goes to the scan
        b, c = (t.view(self.d_state, batch, length).transpose(0, 1) for t in (b, c))
        y = selective_scan(u, delta.transpose(0, 1), -torch.exp(branch.A_log.float()), b, c, branch.D.float(),
                           z=z.transpose(0, 1), delta_bias=branch.dt_proj.bias.float(), delta_softplus=True,
                           return_ungated=score_request == 'y_clip')
        score = None
        if score_request == 'y_clip':
            y, ungated = y
            score = clipped_y_score(ungated.transpose(0, 1))
        elif score_request is not None:
            score = mean_delta_score(delta, branch.dt_proj.bias, softplus=score_request == 'delta_softplus')
        return y.transpose(0, 1), score

    def forward(self, hidden: Tensor, score_request: Optional[str] = None):
        """hidden (B, L, C) -> (B, L, C), plus the requested per-token score (B, L) summed over
        both directions, the backward one flipped back to image order (None when not asked)."""
        batch, length, dims = hidden.shape
        xz = (self.in_proj.weight @ hidden.reshape(batch * length, dims).t()).view(-1, batch, length)
        y_fwd, s_fwd = self.scan(xz, self.branch(False), score_request)
        y_bwd, s_bwd = self.scan(xz.flip(-1), self.branch(True), score_request)
        y = (y_fwd + y_bwd.flip(-1)).reshape(y_fwd.shape[0], batch * length)
        out = (y.t() @ self.out_proj.weight.t()).view(batch, length, dims)
        if self.direction_merge == 'mean':  # (y_f + y_b) W / 2 == ((y_f + y_b) / 2) W exactly (a power of two)
            out.mul_(0.5)
        score = None if s_fwd is None else s_fwd + s_bwd.flip(-1)
        return out, score


class VimBlock(nn.Module):
    """Pre-norm block on the (hidden, residual) pair, residual kept in fp32 as in the release."""

    def __init__(self, dims: int, drop_path: float = 0., **mixer_kwargs):
        super().__init__()
        self.mixer = BiMambaMixer(dims, **mixer_kwargs)  # before norm: the official key order
        self.norm = RMSNorm(dims)
        self.drop_path = DropPath(drop_path)

    def forward(self, hidden: Tensor, residual: Optional[Tensor], score_request: Optional[str] = None):
        normed, residual = add_rms_norm(hidden if residual is None else self.drop_path(hidden), residual,
                                        self.norm.weight, self.norm.eps)
        hidden, score = self.mixer(normed, score_request)
        return hidden, residual, score


class PatchEmbed(nn.Module):
    """Images (B, 3, H, W) -> (B, h*w, C) tokens in row-major order. With ``tubelet_size`` (video,
    VideoMamba): clips (B, 3, T, H, W) -> (B, t*h*w, C) tokens in frame-major order, each from a
    ``tubelet_size`` x patch x patch block (a Conv3d, t = T // tubelet_size). Returns the tokens and
    the patch grid: (h, w), or (t, h, w) for video."""

    def __init__(self, patch_size: int = 16, stride: int = 16, in_channels: int = 3, embed_dims: int = 192,
                 tubelet_size: Optional[int] = None):
        super().__init__()
        self.patch_size, self.stride, self.tubelet_size = patch_size, stride, tubelet_size
        if tubelet_size is None:
            self.proj = nn.Conv2d(in_channels, embed_dims, patch_size, stride)
        else:
            self.proj = nn.Conv3d(in_channels, embed_dims, (tubelet_size, patch_size, patch_size),
                                  (tubelet_size, stride, stride))

    def grid_size(self, *size: int) -> tuple:
        """The patch grid of an input of spatial size (H, W), or (T, H, W) for a video model."""
        video = self.tubelet_size is not None
        if len(size) != 2 + video:
            raise ValueError(f'expected {"(T, H, W)" if video else "(H, W)"}, got {size}')
        *frames, height, width = size
        if height < self.patch_size or width < self.patch_size:
            raise ValueError(f'input {height}x{width} is smaller than one {self.patch_size}x{self.patch_size} '
                             'patch: resize or pad the image to at least the patch size')
        grid = ((height - self.patch_size) // self.stride + 1, (width - self.patch_size) // self.stride + 1)
        if video:
            if frames[0] < self.tubelet_size or frames[0] % self.tubelet_size:
                raise ValueError(f'{frames[0]} frames do not split into tubelets of {self.tubelet_size}')
            grid = (frames[0] // self.tubelet_size, ) + grid
        return grid

    def forward(self, images: Tensor):
        dims = 4 if self.tubelet_size is None else 5
        if images.dim() != dims:
            raise ValueError(f'expected {"images (B, C, H, W)" if dims == 4 else "clips (B, C, T, H, W)"}, got a '
                             f'{images.dim()}-D input of shape {tuple(images.shape)}'
                             + ('' if dims == 4 else ': this is a video model (num_frames set)'))
        self.grid_size(*images.shape[2:])
        x = self.proj(images)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])


def resize_pos_embed(pos_embed: Tensor, src_grid, dst_grid) -> Tensor:
    """Bicubically resize a (1, h*w, C) grid position embedding (no class row) to ``dst_grid``."""
    if tuple(src_grid) == tuple(dst_grid):
        return pos_embed
    grid = pos_embed.reshape(1, *src_grid, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(dst_grid), mode='bicubic', align_corners=False)
    return grid.to(pos_embed.dtype).flatten(2).transpose(1, 2)


def cls_sequence_index(num_patches: int, cls_token_position: str) -> int:
    """Where the class token sits among ``num_patches`` patch tokens: 0 ('front', VideoMamba) or
    num_patches // 2 ('middle', Vim). Also its row in the stored position embedding."""
    return 0 if cls_token_position == 'front' else num_patches // 2


class VisionMamba(nn.Module):
    """The official Vim: patch embed, middle class token, absolute position embedding (resized on
    the fly for any input size), pre-norm blocks, final RMSNorm, linear head; and the official
    VideoMamba with the arguments below (``vim_arch('videomamba_tiny', num_frames=8)``).

    Args:
        reduction: a :class:`mtr_mm.reduction.TokenReduction` (or None): called after every block
            to remove tokens, the only place where the network changes with reduction.
        cuda_graph: on CUDA inputs at inference, capture the forward as a CUDA graph per input shape
            and replay it (see cuda_graph.py): removes the host's kernel-launch cost, which bounds
            small batches. Same numbers; off by default.
        with_cls_token: classification models insert one; the dense backbones of the Vim paper run
            without.
        cls_token_position: 'middle' (Vim: between the two halves of the patch sequence) or 'front'
            (VideoMamba: before every patch). The stored position embedding keeps its class row at
            the same index.
        direction_merge: how the mixers merge their two scan directions, 'mean' (Vim) or 'sum'
            (VideoMamba).
        num_frames: 0 for an image model; the frames of a video clip (VideoMamba video models): the
            patch embedding becomes a Conv3d over ``tubelet_size`` frames, tokens are frame-major
            ([cls,] frame 0 row-major, frame 1, ...) and a temporal position embedding
            ``(1, num_frames // tubelet_size, C)`` is added to every token of a frame.
        num_classes: 0 gives no head (``head`` is then an Identity).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, stride: int = 16, in_channels: int = 3,
                 embed_dims: int = 192, depth: int = 24, d_state: int = 16, d_conv: int = 4,
                 expand: int = 2, dt_rank: Optional[int] = None, num_classes: int = 1000,
                 with_cls_token: bool = True, cls_token_position: str = 'middle', direction_merge: str = 'mean',
                 num_frames: int = 0, tubelet_size: int = 1, drop_path_rate: float = 0., reduction=None,
                 cuda_graph: bool = False):
        super().__init__()
        if cls_token_position not in ('middle', 'front'):
            raise ValueError(f"cls_token_position must be 'middle' (Vim) or 'front' (VideoMamba), "
                             f'got {cls_token_position!r}')
        if num_frames < 0 or (num_frames and (tubelet_size < 1 or num_frames % tubelet_size)):
            raise ValueError(f'num_frames={num_frames} must be 0 (images) or a positive multiple of '
                             f'tubelet_size={tubelet_size}')
        self.cuda_graph = cuda_graph
        self._graph_runners: Dict[str, CUDAGraphForward] = {}
        self.embed_dims, self.depth, self.d_state, self.d_conv, self.expand = embed_dims, depth, d_state, d_conv, expand
        self.dt_rank = dt_rank or math.ceil(embed_dims / 16)
        self.cls_token_position, self.direction_merge, self.num_frames = cls_token_position, direction_merge, num_frames
        self.patch_embed = PatchEmbed(patch_size, stride, in_channels, embed_dims,
                                      tubelet_size if num_frames else None)
        # The grid the position embeddings are stored for: (h, w), or (t, h, w) for video.
        self.pos_grid = self.patch_embed.grid_size(*((num_frames, ) if num_frames else ()), img_size, img_size)
        spatial_patches = self.pos_grid[-2] * self.pos_grid[-1]
        self.with_cls_token = with_cls_token
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, spatial_patches + int(with_cls_token), embed_dims))
        if num_frames:
            self.temporal_pos_embedding = nn.Parameter(torch.zeros(1, self.pos_grid[0], embed_dims))
        self.head = nn.Linear(embed_dims, num_classes) if num_classes > 0 else nn.Identity()
        drop_rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear, as released
        self.layers = nn.ModuleList(
            VimBlock(embed_dims, drop_path=rate, d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=self.dt_rank,
                     direction_merge=direction_merge)
            for rate in drop_rates)
        self.drop_path = DropPath(drop_path_rate)
        self.norm_f = RMSNorm(embed_dims)
        self.set_reduction(reduction)
        # Callables fn(layer_index, state) run after every reduction step (token visualisation).
        self.token_observers: List[Callable[[int, TokenState], None]] = []
        # Layers whose output a dense wrapper restores to full resolution (set by VimBackbone),
        # so that the FLOPs report counts what the restoration computes.
        self.restored_after: Tuple[int, ...] = ()
        self.init_weights()

    def set_reduction(self, reduction):
        """Install a token reduction (config dict, TokenReduction or None), e.g. to compare methods on
        one loaded model; checked against the model's grid now, not at the first image."""
        reduction = build_reduction(reduction)
        if reduction is not None:
            reduction.check(self.dims(), self.pos_grid, self.cls_position(self.pos_grid))
        self.reduction = reduction
        self.reset_graphs()

    def run_graphed(self, name: str, forward: Callable, images: Tensor):
        """``forward(images)``, replayed as a CUDA graph (one runner per entry point ``name``) when
        ``cuda_graph`` is on and no token observer (a Python callback, which a replay would skip) is
        attached."""
        if not self.cuda_graph or self.token_observers:
            return forward(images)
        runner = self._graph_runners.setdefault(name, CUDAGraphForward())
        return runner(forward, images)

    def reset_graphs(self):
        """Drop captured graphs: they hold the reduction's schedule and the parameters' addresses."""
        for runner in getattr(self, '_graph_runners', {}).values():
            runner.reset()

    def _apply(self, fn, *args, **kwargs):  # .to() / .cuda() / .half() may move the parameters
        self.reset_graphs()
        return super()._apply(fn, *args, **kwargs)

    def init_weights(self):
        """Vim's initialisation for training from scratch (official checkpoints overwrite it):
        mixers keep Mamba's own (BiMambaMixer.reset_parameters)."""
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        if self.with_cls_token:
            nn.init.trunc_normal_(self.cls_token, std=.02)
        if isinstance(self.head, nn.Linear):
            nn.init.trunc_normal_(self.head.weight, std=.02)
            nn.init.zeros_(self.head.bias)
        # GPT-2 style rescale of the projections that write into the residual stream.
        with torch.no_grad():
            for layer in self.layers:
                layer.mixer.out_proj.weight /= math.sqrt(self.depth)

    def dims(self) -> VimDims:
        return VimDims.from_model(self)

    def cls_position(self, grid_size: tuple) -> Optional[int]:
        """The class token's index in the token sequence of this patch grid (None without one)."""
        return cls_sequence_index(math.prod(grid_size), self.cls_token_position) if self.with_cls_token else None

    def embed(self, images: Tensor) -> TokenState:
        """Patch embed, the position embedding (its grid part resized to the input's grid; for video
        the spatial one shared by all frames plus the temporal one per frame), then the class token
        (its own position-embedding row added) at its place. Returns the initial token state."""
        x, grid = self.patch_embed(images)  # a channel-major view of the convolution's output
        pos_embed = self.pos_embed
        if self.with_cls_token:
            row = cls_sequence_index(self.pos_grid[-2] * self.pos_grid[-1], self.cls_token_position)
            cls = self.cls_token + pos_embed[:, row:row + 1]
            pos_embed = torch.cat([pos_embed[:, :row], pos_embed[:, row + 1:]], dim=1)
        pos_embed = resize_pos_embed(pos_embed, self.pos_grid[-2:], grid[-2:])
        if self.num_frames:
            if grid[0] != self.pos_grid[0]:
                raise ValueError(f'this video model embeds {self.num_frames} frames ({self.pos_grid[0]} tubelets); '
                                 f'got a clip of {grid[0] * self.patch_embed.tubelet_size} frames')
            frames = pos_embed[:, None] + x.view(x.shape[0], grid[0], -1, x.shape[-1])
            x = (frames + self.temporal_pos_embedding[:, :, None]).flatten(1, 2)
        else:
            x = pos_embed + x
        # (the position embedding first: the sum is then written token-major, as the blocks and the
        # fused norm read it, instead of in the convolution's layout, which the norm would copy)
        cls_position = self.cls_position(grid)
        if cls_position is not None:
            x = torch.cat([x[:, :cls_position], cls.expand(x.shape[0], -1, -1), x[:, cls_position:]], dim=1)
        records = self.reduction.record_flags() if self.reduction is not None else {}
        return TokenState.create(x, cls_position, grid, **records)

    def flops(self, grid_size: tuple, directions: int = 1, reduced: bool = True) -> FlopsReport:
        """Analytic FLOPs of one image with this patch grid: with the reduction and its overhead,
        or of the unreduced network (``reduced=False``); ``directions`` 1 or 2 (see flops.py)."""
        if reduced and self.reduction is not None:
            return self.reduction.flops(self.dims(), grid_size, self.with_cls_token, directions, self.restored_after)
        num_patches = math.prod(grid_size)
        return vim_flops(self.dims(), num_patches, num_patches + int(self.with_cls_token), directions=directions)

    def removed_per_layer(self, grid_size: tuple) -> List[int]:
        """Tokens the reduction removes after each layer for this input grid (zeros without one)."""
        if self.reduction is None:
            return [0] * self.depth
        return self.reduction.removed(self.dims(), grid_size, self.with_cls_token)

    def forward_blocks(self, state: TokenState,
                       on_layer: Optional[Callable[[int, TokenState], None]] = None) -> TokenState:
        """Run every block, reducing tokens after the layers the schedule names. ``on_layer(i,
        state)`` sees each block's output before that layer's reduction (dense features)."""
        reduction = self.reduction
        removed = self.removed_per_layer(state.grid_size)
        for index, layer in enumerate(self.layers):
            if reduction is not None and index == reduction.reactivate_at:
                state = reduction.reactivate(state)
            score_request = reduction.score_request(removed[index]) if reduction is not None else None
            state.hidden, state.residual, score = layer(state.hidden, state.residual, score_request)
            if on_layer is not None:
                on_layer(index, state)
            if removed[index]:
                state = reduction.reduce(state, removed[index], score)
                for observer in self.token_observers:
                    observer(index, state)
        return state

    def final_features(self, state: TokenState) -> Tensor:
        """norm_f(residual + hidden) for every token (B, L, C)."""
        return add_rms_norm(self.drop_path(state.hidden), state.residual, self.norm_f.weight, self.norm_f.eps)[0]

    def forward_features(self, images: Tensor) -> Tensor:
        """The class feature (B, C), read at the class token's tracked index."""
        if not self.with_cls_token:
            raise ValueError('forward_features reads the class token; this model was built with '
                             'with_cls_token=False (use a dense backbone wrapper instead)')
        state = self.forward_blocks(self.embed(images))
        return state.read_cls(self.final_features(state))

    def forward(self, images: Tensor) -> Tensor:
        return self.run_graphed('logits', self.logits, images)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.forward_features(images))


def vim_arch(arch: str, **overrides) -> dict:
    """Keyword arguments for a released size ('tiny' | 'small' | 'base'), with overrides."""
    if arch not in VIM_ARCH:
        raise ValueError(f'unknown Vim arch {arch!r}; choose one of {sorted(VIM_ARCH)}')
    return {**VIM_ARCH[arch], **overrides}
