"""Compile the Triton kernels for a Hopper GPU (sm_90a) on any machine, GPU or not.

Runs the paper's models through the Triton path on CPU tensors with every kernel launch
recorded instead of executed, then compiles each distinct launch (kernel × constants × argument
types) with Triton's own compiler and ptxas, and prints the registers and spills ptxas reports.
A kernel that would fail to compile on the GPU fails here; a spilling one shows up before any
GPU time is spent. Nothing is timed.

    python bench/triton_compile_check.py                      # every model × precision
    python bench/triton_compile_check.py --models "paper dense" --precisions tf32
    python bench/triton_compile_check.py --precisions tf32 --config \
        '{"ATTENTION_CAUSAL_SPLIT": 1, "ATTENTION_EXP2": 1, "ATTENTION_KV_STORED": 1}'
    python bench/triton_compile_check.py --ptx /tmp/ptx-new    # then the same in another
    diff -r /tmp/ptx-old /tmp/ptx-new                            # checkout: did the code change?

`--ptx DIR` writes each launch's PTX instructions (comments, debug sections, line markers and
their labels dropped, so that only code differs) and their opcode counts: a kernel edit meant to leave the
shipped launches alone can be checked to do so without a GPU.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels, not the interpreter's

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_lm import MODELS  # noqa: E402
from launch_constants import NAMES, PRECISIONS, configured  # noqa: E402

from neuroevo.genome import initial_weights  # noqa: E402
from neuroevo.kernels import cpu as cpu_kernels  # noqa: E402
from neuroevo.kernels import gpu as gpu_kernels  # noqa: E402
from neuroevo.models.transformer import Transformer  # noqa: E402
from neuroevo.tasks.language import population_for_kernels  # noqa: E402

VOCAB = 2051


def recorded_launches(model_names: list[str], precision: int) -> dict:
    """{(kernel name, constants, register cap): (kernel, args, constants, models, register cap)}
    for one forward of each model, launching nothing (the outputs stay uninitialised, which no
    one reads)."""
    launches: dict = {}
    current = [""]

    def record(kernel, grid, precision, *args, max_registers=0, **constants):
        constants = {**constants, "PRECISION": precision}
        key = (kernel.__name__, tuple(sorted(constants.items())), max_registers)
        launches.setdefault(key, (kernel, args, constants, [], max_registers))[3].append(
            current[0])

    patches = [(gpu_kernels, "_launch", record),
               (gpu_kernels, "usable", gpu_kernels.eligible),
               (gpu_kernels, "matmul_precision", lambda: precision),
               (cpu_kernels, "usable", lambda *tensors: False)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    try:
        for name in model_names:
            current[0] = name
            encoding, config = MODELS[name]
            model = Transformer(config, encoding, VOCAB)
            theta = initial_weights(model.layout, [0, 1], torch.device("cpu"))
            # 128-token sequences, as at the benchmarks' fixed setting: the JIT specialises
            # the integer arguments divisible by 16 (`specialised`)
            tokens = torch.randint(3, VOCAB, (2, 128))
            with torch.no_grad():
                theta, aligned = population_for_kernels(model.layout, theta)
                model.negative_cross_entropy(model.layout.views(theta, aligned=aligned),
                                             tokens, torch.tensor([128, 128]))
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
    return launches


def specialised(kernel, args: tuple, constants: dict) -> tuple[dict, dict, dict]:
    """(signature, constexprs, attributes) of a launch, as Triton's JIT makes them on a GPU:
    a pointer 16-byte aligned and an integer divisible by 16 carry `tt.divisibility` (which lets
    the compiler vectorise loads and stores), an integer equal to 1 becomes a constant. Without
    this the compiled code would be the unspecialised kernel's, with scalar loads and other
    register counts than the GPU's."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend

    runtime = [name for name in kernel.arg_names if name not in constants]
    sig = {name: "constexpr" for name in constants}
    constexprs, attrs = dict(constants), {}
    for name, arg in zip(runtime, args):
        kind, key = native_specialize_impl(BaseBackend, arg, False, True, True)
        sig[name] = kind
        if kind == "constexpr":
            constexprs[name] = key
        elif key:
            attrs[(kernel.arg_names.index(name),)] = BaseBackend.parse_attr(key)
    return {name: sig[name] for name in kernel.arg_names}, constexprs, attrs


def ptxas_report(ptx: str) -> str:
    """ptxas -v's register / spill / stack lines for the kernel, condensed to one line."""
    from triton.backends.nvidia.compiler import get_ptxas
    ptxas = get_ptxas(90).path  # the one Triton itself uses for sm_90 (it varies by version)
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as handle:
        handle.write(ptx)
        handle.flush()
        result = subprocess.run([str(ptxas), "-v", "--gpu-name", "sm_90a", handle.name,
                                 "-o", os.devnull], capture_output=True, text=True, check=True)
    wanted = [line.split(":", 1)[-1].strip() for line in result.stderr.splitlines()
              if "Used" in line or "spill" in line]
    return ", ".join(part for line in wanted for part in line.split(", ")
                     if part.startswith("Used") or ("spill" in part and not part.startswith("0 ")))


def write_ptx(directory: Path, stem: str, ptx: str) -> None:
    """DIR/stem.ptx: the instructions alone; DIR/stem.ops: how many of each opcode."""
    before_debug = ptx.split(".section\t.debug")[0]
    lines = (re.sub(r"\s*//.*$", "", line) for line in before_debug.splitlines())
    # .loc/.file lines and $L__tmp labels only mark source lines for the debug sections
    code = "\n".join(line for line in lines if line.strip()
                     and not re.match(r"\s*(\.loc|\.file)\s|\$L__tmp\d+:$", line))
    opcodes = collections.Counter(re.findall(r"^\s+([a-z][\w.]*)", code, flags=re.M))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.ptx").write_text(code + "\n")
    (directory / f"{stem}.ops").write_text(
        "".join(f"{count:6d} {op}\n" for op, count in sorted(opcodes.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS),
                        choices=list(PRECISIONS))
    parser.add_argument("--config", type=json.loads, default={},
                        help='launch constants of gpu.py to compile with, as JSON: '
                             '{"ATTENTION_EXP2": 1, "QUERY_BLOCK": 64, ...}')
    parser.add_argument("--ptx", type=Path, metavar="DIR",
                        help="also write each launch's PTX code and opcode counts to DIR")
    parser.add_argument("--unverified", action="store_true",
                        help="compile even the precisions gpu.FAULTED_ON_GPU replaces, as asked")
    args = parser.parse_args()
    if args.unverified:
        os.environ["NEUROEVO_GPU_KERNELS"] = "unverified"
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    print(f"triton {triton.__version__}, target sm_90a, warps by precision "
          f"{gpu_kernels.NUM_WARPS}")
    for precision in args.precisions:
        with configured(args.config, PRECISIONS[precision]):
            launches = recorded_launches(args.models, PRECISIONS[precision])
            warps, stages = dict(gpu_kernels.NUM_WARPS), dict(gpu_kernels.NUM_STAGES)
        for (name, *_), (kernel, launch_args, constants, models, max_registers) \
                in sorted(launches.items()):
            source = ASTSource(kernel, *specialised(kernel, launch_args, constants))
            cap = {"maxnreg": max_registers} if max_registers else {}
            compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                                      options={"num_warps": warps[constants["PRECISION"]],
                                               "num_stages": stages[constants["PRECISION"]],
                                               **cap})
            launched = NAMES[constants["PRECISION"]]  # FAULTED_ON_GPU may replace the one asked
            if args.ptx:
                models_slug = "+".join(dict.fromkeys(models)).replace(" ", "_")
                write_ptx(args.ptx, f"{precision}-{name}-{models_slug}", compiled.asm["ptx"])
            print(f"{precision:>5}→{launched:<5} {name:<31} shared "
                  f"{compiled.metadata.shared:>6} B | "
                  f"{ptxas_report(compiled.asm['ptx'])} | {', '.join(dict.fromkeys(models))}")


if __name__ == "__main__":
    main()
