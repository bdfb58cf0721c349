"""The GA's mutation noise: torch's path (noise.gaussian's element-wise passes, then addcmul)
against the fused Triton kernel (kernels/triton_noise.py), in one run (issue #6).

On a GPU: each path's median time to mutate the children of a generation in place (P − k rows of
the paper model's D weights), their ratio, and how far the kernel's weights are from torch's
(max |Δ| and the share of bit-identical elements: the hash is exact, so only log, cos and fused
multiply-adds can round otherwise). `--compile-check` needs no GPU: it compiles the kernel for
sm_90a with Triton's compiler and ptxas and prints its registers.

    python bench/bench_noise.py --device cuda              # P − k = 496 rows, paper dense D
    python bench/bench_noise.py --device cuda --model "paper factorized r4"
    python bench/bench_noise.py --compile-check
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if "--compile-check" in sys.argv:
    os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels, not the interpreter's

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_lm import MODELS, VOCAB  # noqa: E402
from timing import interleaved_medians  # noqa: E402

from neuroevo.genome import add_mutations  # noqa: E402
from neuroevo.kernels import gpu_noise  # noqa: E402
from neuroevo.models.transformer import Transformer  # noqa: E402


def compile_check(model_name: str) -> None:
    """Compile the kernel for sm_90a (no GPU needed), specialised for the model's mutation in
    place as the JIT would on a GPU, and print ptxas's register count."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from triton_compile_check import ptxas_report, specialised
    encoding, model = MODELS[model_name]
    dim = Transformer(model, encoding, VOCAB).layout.dim
    kernel = gpu_noise.kernels().scaled_noise_kernel
    weights, keys = torch.empty(2, dim), torch.empty(2, 2, dtype=torch.int32)
    constants = {"BLOCK": gpu_noise.NOISE_BLOCK}
    compiled = triton.compile(ASTSource(kernel, *specialised(
                                  kernel, (weights, weights, dim, keys, weights[0], dim),
                                  constants)),
                              target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": gpu_noise.NOISE_WARPS})
    print(f"triton {triton.__version__}, sm_90a: scaled_noise_kernel "
          f"{ptxas_report(compiled.asm['ptx'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--rows", type=int, default=496, help="children mutated (P − k)")
    parser.add_argument("--model", default="paper dense", choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile-check", action="store_true",
                        help="compile the kernel for sm_90a instead (no GPU needed)")
    args = parser.parse_args()
    if args.compile_check:
        compile_check(args.model)
        return
    device = torch.device(args.device)
    encoding, model = MODELS[args.model]
    layout = Transformer(model, encoding, VOCAB).layout
    std = layout.mutation_std(0.01).to(device)
    seeds = list(range(1000, 1000 + args.rows))
    start = torch.zeros(args.rows, layout.dim, device=device)
    torch_path, kernel_path = start.clone(), start.clone()

    def mutate(theta: torch.Tensor, kernel: bool) -> None:
        gpu_noise.NOISE_KERNEL = kernel
        add_mutations(theta, seeds, std)

    work = [lambda: mutate(torch_path, False)]
    if device.type == "cuda" and gpu_noise.kernels() is not None:
        work.append(lambda: mutate(kernel_path, True))
    times = interleaved_medians(work, device, args.repeats)
    print(f"# bench_noise — {args.model}, {args.rows} rows × D={layout.dim:,} "
          f"({args.rows * layout.dim / 1e6:.1f} M draws), device={device}, median of "
          f"{args.repeats}")
    print(f"{'torch ops (gaussian + addcmul)':>34} | {times[0] * 1e3:8.2f} ms")
    if len(times) == 1:
        print("the fused kernel needs CUDA and Triton: not timed here")
        return
    print(f"{'fused Triton kernel':>34} | {times[1] * 1e3:8.2f} ms | ×{times[0] / times[1]:.1f}")
    # both went through the same number of mutations from the same start: compare the weights
    plain, fused = start.clone(), start.clone()
    mutate(plain, False)
    mutate(fused, True)
    identical = (plain == fused).double().mean().item()
    print(f"{'kernel vs torch ops':>34} | max |Δ| {(plain - fused).abs().max().item():.2e}, "
          f"{identical:.4%} of the weights bit-identical")


if __name__ == "__main__":
    main()
