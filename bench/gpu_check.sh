#!/usr/bin/env bash
# One short, prepared GPU session check (issue #6): CUDA-vs-CPU tests, then the LM benchmark at the
# issue's fixed setting with each lever (fp32, TF32, bf16 autocast, torch.compile; every line
# prints its fitness deviation from fp32 eager), variable-length stories with and without length
# buckets, the loop baseline, and the RL rollouts. Prints everything; about 6–8 minutes on an H100.
#   bash bench/gpu_check.sh            (from the repository root, torch with CUDA installed)
set -euo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
python -m pytest -q tests/test_gpu.py tests/test_transformer.py
# the fixed setting: P=512, 256 sequences × 128 tokens, dense and factorized r4
fixed=(--device cuda --population 512 --batch 256 --seq-len 128 --skip-loop --repeats 5
       --models "paper dense" "paper factorized r4")
python bench/bench_lm.py "${fixed[@]}"
python bench/bench_lm.py "${fixed[@]}" --precision tf32
python bench/bench_lm.py "${fixed[@]}" --precision bf16
python bench/bench_lm.py "${fixed[@]}" --compile
# goal 2 stand-in (the real first 1,024 stories need the network): P=512, 1,024 stories of
# 64..512 tokens in length buckets of 64 against one batch padded to the longest
python bench/bench_lm.py --device cuda --paper-scale --seq-len 512 --min-length 64 --skip-loop \
    --repeats 3 --models "paper dense" "paper factorized r4"
python bench/bench_lm.py --device cuda --paper-scale --seq-len 512 --min-length 64 --skip-loop \
    --repeats 3 --models "paper dense" --length-bucket 0
# the loop baseline at a smaller population (a per-individual loop of 512 is minutes)
python bench/bench_lm.py --device cuda --population 64 --batch 256 --seq-len 128 \
    --models "paper dense" "paper factorized r4"
python bench/bench_rl.py --device cuda --families atari mujoco
