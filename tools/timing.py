"""Speed numbers that mean something on a shared machine, for every tool that prints one.

Each run is timed in interleaved rounds (the order rotated every round, so a burst of other work on
the machine hits every run alike), on a different input each round; a run's speed is the median of
its rounds, and its spread ((max - min) / median of the rounds' rates) says how steady the machine
was. A ratio of two speeds is only stated as a fact when both spreads are small.
"""
import statistics
import time
from typing import Callable, Dict, List

MIN_ROUNDS = 7
# Above this spread the rounds disagree by more than the speed-ups we want to report (~1.2-1.7x).
BUSY_SPREAD = 0.15


def wall_seconds(fn: Callable[[], object]) -> float:
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def interleaved_rounds(timed_calls: Dict[str, Callable[[int], float]], rounds: int) -> Dict[str, List[float]]:
    """``timed_calls[name](k)`` runs ``name`` on input ``k`` and returns its seconds; every run once
    per round, the order rotated each round. Warm-up is the caller's (it knows what needs warming)."""
    names = list(timed_calls)
    seconds = {name: [] for name in names}
    for k in range(rounds):
        for name in names[k % len(names):] + names[:k % len(names)]:
            seconds[name].append(timed_calls[name](k))
    return seconds


def rate(seconds: List[float], items: int) -> float:
    """Items per second of the median round."""
    return items / statistics.median(seconds)


def spread(seconds: List[float]) -> float:
    """(max - min) / median of the rounds' rates."""
    rates = [1 / s for s in seconds]
    return (max(rates) - min(rates)) / statistics.median(rates)


def ratio_verdict(ratio: float, spreads: List[float], what: str = 'images/s') -> str:
    """``'1.66x images/s'``, or why that ratio is not to be believed."""
    worst = max(spreads)
    if worst > BUSY_SPREAD:
        return (f'machine busy: spread {worst:.0%} (> {BUSY_SPREAD:.0%}) between timing rounds — the {what} '
                f'ratio ({ratio:.2f}x) is not reliable; run again on an idle machine')
    return f'{ratio:.2f}x {what} (spread {worst:.0%})'


def cuda_graph_seconds(fn: Callable[[], object], iters: int, warmup: int = 2) -> float:
    """GPU seconds per call of ``fn`` (CUDA work only, no host launch cost): ``fn`` is captured once
    as a CUDA graph and the graph replayed ``iters`` times between two CUDA events. ``fn`` must not
    synchronise with the host (capture then fails)."""
    import torch
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # kernels autotuned, workspaces allocated, before capture
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / iters
