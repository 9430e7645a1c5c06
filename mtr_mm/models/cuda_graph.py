"""CUDA-graph replay of an inference forward.

A Vim forward is about a thousand small kernels; at small batches the GPU waits for the host to issue
them. Token reduction does not change that: its schedule fixes every layer's token count for a
given input size, so all shapes are static and the whole reduced forward can be captured once and
replayed as one graph. The forward must not synchronise with the host (no ``.item()``, no shape
read from data): capture fails loudly if it does.
"""
from typing import Callable, Dict, NamedTuple

import torch
from torch import Tensor
from torch.utils._pytree import tree_map


class _Graph(NamedTuple):
    graph: 'torch.cuda.CUDAGraph'
    inputs: Tensor
    outputs: object


class CUDAGraphForward:
    """``runner(forward, images)`` calls ``forward(images)``; for CUDA inputs under ``torch.no_grad``/``inference_mode`` it
    captures a graph per input signature (shape, dtype, device, autocast state) on the first call and
    replays it afterwards. Outputs are returned as fresh tensors (a replay overwrites the graph's
    own). Anything else (CPU, training, autograd) runs ``forward`` eagerly.

    ``forward`` is a function of one image tensor returning a tensor or a (nested) tuple/list/dict of
    tensors; one runner serves one forward (its graphs are keyed by the input only).

    Args:
        warmup: eager calls on a side stream before capture (Triton autotuning, cuBLAS workspaces).
    """

    def __init__(self, warmup: int = 2):
        self.warmup = warmup
        self.graphs: Dict[tuple, _Graph] = {}
        self.pool = None

    @staticmethod
    def usable(images: Tensor) -> bool:
        return images.is_cuda and not torch.is_grad_enabled()

    def signature(self, images: Tensor) -> tuple:
        device = images.device.type
        return (tuple(images.shape), images.dtype, images.device, torch.is_inference_mode_enabled(),
                torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))

    def __call__(self, forward: Callable, images: Tensor):
        if not self.usable(images):
            return forward(images)
        key = self.signature(images)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.graphs[key] = self.capture(forward, images)
        entry.inputs.copy_(images)
        entry.graph.replay()
        return tree_map(lambda t: t.clone() if isinstance(t, Tensor) else t, entry.outputs)

    def capture(self, forward: Callable, images: Tensor) -> _Graph:
        inputs = images.clone()
        side = torch.cuda.Stream(device=images.device)
        side.wait_stream(torch.cuda.current_stream(images.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                forward(inputs)
        torch.cuda.current_stream(images.device).wait_stream(side)
        if self.pool is None:  # one memory pool for all of this forward's graphs (replayed one at a time)
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self.pool):
                outputs = forward(inputs)
        except RuntimeError as err:
            raise RuntimeError(
                f'CUDA graph capture of the forward failed for input {tuple(images.shape)}: {err}. Something in '
                'the forward synchronises with the host; run without cuda_graph (the default) and report '
                'the configuration.') from err
        return _Graph(graph, inputs, outputs)

    def reset(self):
        """Forget every captured graph (after weights are replaced by new tensors, or the
        reduction changes)."""
        self.graphs.clear()
