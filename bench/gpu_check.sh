#!/usr/bin/env bash
# One short, prepared GPU session check (issue #6). In order of value, so that a session cut
# short still has the main figures:
#  1. the Triton kernels compiled and tested on the GPU against torch's ops, CUDA-vs-CPU tests;
#  2. the fixed setting (P=512, 256 × 128 tokens), dense and factorized r4: Triton
#     kernels in tf32 and bf16, then the same with NEUROEVO_GPU_KERNELS=0 (torch's ops; the state
#     before the kernels), fp32 both ways, and torch.compile. Every line prints the floor from
#     the device's measured ceilings and the fitness deviation from fp32 eager torch ops;
#  3. goal 2's stand-in: 1,024 stories of 64..512 tokens in length buckets (vs one padded batch);
#  4. the RL rollouts with the policy on the GPU.
#   bash bench/gpu_check.sh            (from the repository root, torch with CUDA installed)
set -euo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
python -m pytest -q -x tests/test_gpu_kernels.py tests/test_gpu.py tests/test_transformer.py
fixed=(--device cuda --population 512 --batch 256 --seq-len 128 --skip-loop --repeats 5
       --models "paper dense" "paper factorized r4")
python bench/bench_lm.py "${fixed[@]}" --precision tf32
python bench/bench_lm.py "${fixed[@]}" --precision bf16
NEUROEVO_GPU_KERNELS=0 python bench/bench_lm.py "${fixed[@]}" --precision tf32
NEUROEVO_GPU_KERNELS=0 python bench/bench_lm.py "${fixed[@]}" --precision bf16
python bench/bench_lm.py "${fixed[@]}"
NEUROEVO_GPU_KERNELS=0 python bench/bench_lm.py "${fixed[@]}"
NEUROEVO_GPU_KERNELS=0 python bench/bench_lm.py "${fixed[@]}" --compile
paper=(--device cuda --paper-scale --seq-len 512 --min-length 64 --skip-loop --repeats 3)
python bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" "paper factorized r4"
python bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" --length-bucket 0
python bench/bench_rl.py --device cuda --families atari mujoco
# the per-individual loop baseline at a smaller population (a loop over 512 is minutes)
python bench/bench_lm.py --device cuda --population 64 --batch 256 --seq-len 128 --precision tf32 \
    --models "paper dense" "paper factorized r4"
