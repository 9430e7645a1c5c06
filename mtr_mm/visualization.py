"""Pictures of which tokens survived a reduction and which were merged into which.

``token_layout`` turns a token state into per-patch maps (pure tensors); ``render_token_panels``
draws one panel per reducing layer: surviving patches as they are, merged patches tinted with the
colour of their group (outlined: the token that absorbed them), pruned patches darkened.
``TokenRecorder`` collects the layouts during any forward of a Vim model.
"""
import colorsys
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import Tensor

from .reduction.state import TokenState


@dataclass
class TokenLayout:
    """Per image, over the patch grid (H, W)."""
    kept: np.ndarray          # bool: the patch still has a token of its own
    merged: np.ndarray        # bool: removed and averaged into another token
    group: np.ndarray         # int: grid index of the patch whose token now represents this one


def token_layout(state: TokenState) -> List[TokenLayout]:
    """Layouts of every image of a (reduced) token state."""
    height, width = state.grid_size
    sequence = torch.arange(state.num_original, device=state.positions.device)
    own = state.positions.gather(1, state.source_map)          # original position of the representative
    kept = own == sequence
    merged = ~kept & (state.sizes.gather(1, state.source_map) > 1)
    patches = sequence if state.cls_position is None else sequence[sequence != state.cls_position]

    def to_grid(position: Tensor) -> Tensor:  # sequence position -> grid index (cls sits in between)
        return position if state.cls_position is None else position - (position > state.cls_position).long()

    layouts = []
    for b in range(state.positions.shape[0]):
        layouts.append(TokenLayout(
            kept=kept[b, patches].reshape(height, width).cpu().numpy(),
            merged=merged[b, patches].reshape(height, width).cpu().numpy(),
            group=to_grid(own[b, patches]).reshape(height, width).cpu().numpy()))
    return layouts


class TokenRecorder:
    """Attach to a VisionMamba (``with TokenRecorder(vim) as rec: model(...)``); ``rec.layers``
    maps each reducing layer to the layouts of the images of the last forward."""

    def __init__(self, vim):
        self.vim = vim
        self.layers: Dict[int, List[TokenLayout]] = {}

    def __call__(self, index: int, state: TokenState):
        self.layers[index] = token_layout(state)

    def __enter__(self):
        self.layers = {}
        self.vim.token_observers.append(self)
        return self

    def __exit__(self, *exc):
        self.vim.token_observers.remove(self)


def group_colours(num: int) -> np.ndarray:
    """Distinct colours for ``num`` groups (golden-ratio hues), (num, 3) in [0, 1]."""
    return np.array([colorsys.hsv_to_rgb((i * 0.618034) % 1, 0.85, 0.95) for i in range(num)])


def draw_layout(ax, image: np.ndarray, layout: TokenLayout, patch: float, title: str):
    """image (H, W, 3) float in [0, 1] covering the patch grid; ``patch`` = pixels per grid cell."""
    from matplotlib.patches import Rectangle
    shown = image.copy()
    height, width = layout.kept.shape
    colours = group_colours(height * width)
    for i in range(height):
        for j in range(width):
            cell = (slice(int(i * patch), int((i + 1) * patch)), slice(int(j * patch), int((j + 1) * patch)))
            if layout.merged[i, j]:
                shown[cell] = 0.45 * shown[cell] + 0.55 * colours[layout.group[i, j]]
            elif not layout.kept[i, j]:
                shown[cell] = 0.2 * shown[cell]
    ax.imshow(shown)
    absorbing = np.unique(layout.group[layout.merged])
    for index in absorbing:
        i, j = divmod(int(index), width)
        ax.add_patch(Rectangle((j * patch, i * patch), patch, patch, fill=False, lw=1.2,
                               edgecolor=colours[index]))
    ax.set_title(f'{title}\n{int(layout.kept.sum())} kept, {int(layout.merged.sum())} merged, '
                 f'{int((~layout.kept & ~layout.merged).sum())} pruned', fontsize=7)
    ax.axis('off')


def feature_pca_rgb(maps: List[np.ndarray]) -> List[np.ndarray]:
    """(C, H, W) feature maps -> RGB images from their first 3 principal components, one shared
    basis so that maps are comparable."""
    flat = [m.reshape(m.shape[0], -1).T for m in maps]
    data = np.concatenate(flat)
    mean = data.mean(0)
    _, _, vt = np.linalg.svd(data - mean, full_matrices=False)
    projected = [(f - mean) @ vt[:3].T for f in flat]
    low, high = np.percentile(np.concatenate(projected), [1, 99], axis=0)
    return [np.clip((p - low) / (high - low + 1e-8), 0, 1).reshape(*m.shape[1:], 3) for p, m in zip(projected, maps)]


def render_token_panels(path: str, image: np.ndarray, layers: Dict[int, TokenLayout], stride: float,
                        method: str, feature_maps: Optional[Dict[str, np.ndarray]] = None):
    """One figure: the image, a panel per reducing layer, then (dense models) the restored and the
    unreduced feature map of the last output side by side."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = 1 + len(layers) + (len(feature_maps) if feature_maps else 0)
    fig, axes = plt.subplots(1, panels, figsize=(2.6 * panels, 2.9), squeeze=False)
    axes = axes[0]
    axes[0].imshow(image)
    axes[0].set_title('input', fontsize=7)
    axes[0].axis('off')
    for ax, (index, layout) in zip(axes[1:], sorted(layers.items())):
        draw_layout(ax, image, layout, stride, f'{method} after layer {index}')
    if feature_maps:
        for ax, (name, rgb) in zip(axes[1 + len(layers):], zip(feature_maps, feature_pca_rgb(list(feature_maps.values())))):
            ax.imshow(rgb, interpolation='nearest')
            ax.set_title(name, fontsize=7)
            ax.axis('off')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
