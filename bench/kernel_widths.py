"""Which build of the C kernels suits this CPU? Times each candidate build against the default.

The kernels choose their vector width (LANES floats) and how many accumulators a pass keeps
(OUT_BLOCK outputs, LOSS_BLOCK vocabulary entries, the first-layer conv's output vectors; all
three follow WIDE_REGISTER_FILE) from the CPU they are compiled for
(`src/neuroevo/kernels/simd.h`, `conv.c`, `transformer.c`). This builds the default and the
candidates below with those macros overridden, and times, in turns within one process (so a slow
spell of a shared machine hits every build alike):

- the Atari and CarRacing first-layer convolutions (12 → 32 channels, one observation each);
- the paper's loss (tied-embedding logits + cross-entropy, vocabulary 2,051, hidden 32);
- one transformer block of the paper's model (both fused sub-layers).

Usage: python bench/kernel_widths.py [--population 32 --repeats 7 --threads 2]
Every build is checked against the default's output before it is timed.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from neuroevo.genome import initial_weights
from neuroevo.kernels import cpu as cpu_kernels
from neuroevo.models.transformer import Transformer
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.language import ModelConfig
from timing import interleaved_medians

# name → macro overrides; {} is the build `library()` makes for this CPU. WIDE_REGISTER_FILE
# sets the blocks (16/8 with 1, 8/6 with 0) and the conv's passes; OUT_BLOCK overrides it.
CANDIDATES: dict[str, dict[str, int]] = {
    "default": {},
    "AVX-512 layout (16 lanes, 16/8 blocks, wide conv passes)":
        {"LANES": 16, "WIDE_REGISTER_FILE": 1},
    "8 lanes, 16/8 blocks, wide conv passes": {"LANES": 8, "WIDE_REGISTER_FILE": 1},
    "8 lanes, 8/6 blocks (the AVX2 choice)": {"LANES": 8, "WIDE_REGISTER_FILE": 0},
    "8 lanes, 12/6 blocks": {"LANES": 8, "WIDE_REGISTER_FILE": 0, "OUT_BLOCK": 12},
    "4 lanes, 8/6 blocks": {"LANES": 4, "WIDE_REGISTER_FILE": 0},
}


def workloads(pop: int) -> dict[str, Callable[[], torch.Tensor]]:
    """Each timed call, fed fixed random inputs; each reads `cpu_kernels.library()` when called."""
    gen = torch.Generator().manual_seed(0)

    def conv(side: int, kernel: int, stride: int) -> Callable[[], torch.Tensor]:
        x = torch.rand(1, pop * 12, side, side, generator=gen)
        weight = 0.05 * torch.randn(pop, 32, 12, kernel, kernel, generator=gen)
        bias = 0.05 * torch.randn(pop, 32, generator=gen)
        return lambda: cpu_kernels.conv2d_population(x, weight, bias, stride)

    hidden, vocab, tokens = 32, 2051, 1024
    x = torch.randn(pop, tokens, hidden, generator=gen)
    weight = torch.randn(pop, vocab, hidden, generator=gen)
    bias = torch.randn(pop, vocab, generator=gen)
    rows, targets = torch.arange(tokens), torch.randint(0, vocab, (tokens,), generator=gen)
    model = Transformer(ModelConfig(), EncodingConfig("dense"), vocab=vocab)
    params = model.layout.views(initial_weights(model.layout, list(range(pop)),
                                                torch.device("cpu")))
    activations = torch.randn(pop, 16 * 64, hidden, generator=gen)
    return {
        "Atari conv 8×8 s4 on 84²": conv(84, 8, 4),
        "CarRacing conv 4×4 s2 on 64²": conv(64, 4, 2),
        "loss, 1,024 tokens": lambda: cpu_kernels.negative_log_likelihood(x, rows, weight, bias,
                                                                           targets),
        "block, 16 × 64 tokens": lambda: model.blocks[0](params, activations.clone(), 16),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", type=int, default=32, help="individuals per call")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch/OpenMP threads (0: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="kernel-widths-") as cache:  # loaded, then deleted
        builds = {name: cpu_kernels.library_variant(Path(cache), **defines)
                  for name, defines in CANDIDATES.items()}
    if any(build is None for build in builds.values()):
        raise SystemExit("kernel_widths: no C compiler found (set CC), nothing to compare")
    work = workloads(args.population)
    default_library = cpu_kernels.library
    results: dict[str, list[float]] = {}
    try:
        with torch.no_grad():
            for label, call in work.items():
                reference = _with(builds["default"], call)
                calls = []
                for build in builds.values():
                    torch.testing.assert_close(_with(build, call), reference, rtol=1e-4, atol=1e-4)
                    calls.append(functools.partial(_with, build, call))
                results[label] = interleaved_medians(calls, torch.device("cpu"), args.repeats)
    finally:
        cpu_kernels.library = default_library
    print(f"# kernel_widths — P={args.population}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} interleaved repeats; ms (÷ default)")
    print("| build | " + " | ".join(results) + " |")
    print("|---" * (len(results) + 1) + "|")
    for i, name in enumerate(CANDIDATES):
        cells = [f"{times[i] * 1e3:.1f} ({times[i] / times[0]:.2f}×)" for times in results.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")


def _with(build: object, call: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run `call` with `build` as the kernels' library."""
    cpu_kernels.library = lambda: build
    return call()


if __name__ == "__main__":
    main()
