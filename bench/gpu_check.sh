#!/usr/bin/env bash
# The prepared GPU session check (issue #6), in two stages that each fit one 10-minute device call:
#   bash bench/gpu_check.sh core   the Triton kernels compiled and tested on the GPU against torch's
#                                  ops; the issue's fixed setting (P=512, 256 × 128 tokens), dense
#                                  and factorized r4, kernels in TF32 / bf16 / fp32 and torch's ops
#                                  (NEUROEVO_GPU_KERNELS=0: the state before the kernels) in TF32;
#                                  goal 2's stand-in (1,024 stories, log-normal lengths around
#                                  200 tokens: a long tail, as stories have) with kernels
#   bash bench/gpu_check.sh more   each kernel alone under alternative block sizes and warps
#                                  (bench/triton_sweep.py), one padded batch and buckets of 64
#                                  vs buckets within a 5% padding budget,
#                                  torch's ops in bf16 and under torch.compile, RL rollouts, the
#                                  per-individual loop at P=64
#   bash bench/gpu_check.sh faults the kernels' tests and the fixed setting with the launch
#                                  constants and precision fallbacks chosen from `core` and `more`,
#                                  then each launch configuration of the precisions that faulted
#                                  (gpu.FAULTED_ON_GPU), one process each, to find the faulting one
#   bash bench/gpu_check.sh next   what the first H100 session left open (run in the second):
#                                  goal 2's stand-in with the tuned constants, whether TF32 with
#                                  factor operands runs right with them
#                                  (NEUROEVO_GPU_KERNELS=unverified; it did, so FAULTED_ON_GPU
#                                  dropped it), CarRacing rollouts (carry .whl from
#                                  bench/gpu_wheels.sh)
#   bash bench/gpu_check.sh long   what the second session left open: the attention kernel (the
#                                  lever at the paper's lengths) swept at 512-token sequences as
#                                  well as at 128, the loss kernel swept again, both settings
#                                  re-timed with the kernels' tests first; the CPU quota and
#                                  CarRacing's pool scaling (carry .whl)
#   bash bench/gpu_check.sh levers what session 7 (no GPU) prepared, ~8 min: the kernels' tests
#                                  (the levers' included), then split TF32's as asked; the
#                                  attention levers (gpu.ATTENTION_*: causal mask on the diagonal
#                                  only, exp2, keys/values stored) swept alone at 128- and
#                                  512-token sequences, and all on with other blocks, warps and
#                                  pipelining depths (NUM_STAGES: stored keys and values can be
#                                  fetched ahead); the loss's exp2 (LOSS_EXP2) and depth; the
#                                  feed-forward layer in chunks
#                                  (FEED_FORWARD_SPLIT); both settings as shipped and with all
#                                  of them on;
#                                  split-TF32 products (task.precision tf32x3, IEEE's accuracy on
#                                  tensor cores) per kernel, one process each, and at the fixed
#                                  setting; the GA's parts besides the evaluation
#                                  (bench/bench_ga.py); the CPU quota and CarRacing's pool (carry .whl)
#   bash bench/gpu_check.sh shipped what `levers` chose (session 9), as shipped: the kernels' tests,
#                                  both settings, 64-query attention blocks with pipelining
#                                  depth 2 or 3, whole-population chunks at the fixed setting,
#                                  the causal split at the paper's lengths, a kernel profile there
#   bash bench/gpu_check.sh noise  the fused noise kernel (kernels/gpu_noise.py; written in
#                                  session 9 without a GPU): its tests, against torch's path
#                                  (time, bit-identity), and the GA's tell with it on and off
#   bash bench/gpu_check.sh defaults what `shipped` and `noise` switched on (session 12: 64-query
#                                  attention blocks, the causal split, the noise kernel): the
#                                  kernels' and the noise kernel's tests, both settings, and both
#                                  with the split off (session 12 ran it with the split from 256
#                                  tokens as shipped and at every length as the alternative)
#   bash bench/gpu_check.sh winners what `prepared` (session 12's levers, run in the fifth H100
#                                  session, bench/gpu_logs/2026-11-27-h100-prepared.log) chose,
#                                  ~4 min: the embedding kernel on, the factor in the loss kernel
#                                  up to rank 4 (the lazy rescaling lost and was removed): both
#                                  settings as shipped, the fixed one also without the two, then
#                                  the tests of what changed
#   bash bench/gpu_check.sh occupancy what the sixth session (bench/gpu_logs/2026-11-28-h100-untimed*.log)
#                                  left open, ~7 min: the loss kernel's two shifts switched on
#                                  there, timed whole (both settings, as shipped and with them
#                                  off), and register caps (gpu.ATTENTION_MAX_REGISTERS,
#                                  LOSS_MAX_REGISTERS: Triton's maxnreg, session 20), since the
#                                  profile found the attention at 255 registers and one-eighth
#                                  occupancy, and weights in 64-byte-aligned rows
#                                  (gpu.ALIGNED_OPERANDS, session 20): their tests, then the
#                                  attention swept by query block (32 / 64) × cap (none / 168)
#                                  at 128- and 512-token sequences, the loss by rows × cap
#                                  (a 128 cap won there on an H200: 15.3 vs 16.2 ms); both settings'
#                                  generations with the sweeps' winners (best-*.json, sent back
#                                  in $OUT) and with aligned rows, and Nsight Compute's view of
#                                  the attention's winner
#   bash bench/gpu_check.sh combined  the call after `occupancy`, ~3 min, once its best-*.json
#                                  are copied into bench/gpu_logs/: both settings with the
#                                  winners and the aligned rows together, and the kernel profile
#                                  of a generation at the paper's lengths
# Every bench line prints the floor from the device's measured ceilings, the fraction reached,
# and the fitness deviation from fp32 eager torch ops. Output also goes to $OUT/gpu_check.log
# when OUT names a folder (where a remote GPU machine collects what it sends back). Run from the
# repository root; the RL steps need the `rl` extra (`pip install -e ".[rl]"`), or, on the
# project's offline GPU image, the wheels `bash bench/gpu_wheels.sh` fetched into .whl/.
set -uo pipefail  # not -e: one failing step (a compile error, an OOM) must not lose the rest
stage=${1:-core}
if [[ -n "${OUT:-}" ]]; then exec > >(tee -a "$OUT/gpu_check.log") 2>&1; fi
py=${PYTHON:-python3}  # the GPU image's python3 holds its torch and Triton
# the package from this tree, and the RL packages the image lacks if bench/gpu_wheels.sh fetched
# them (carried as .whl)
$py -c "import neuroevo" 2>/dev/null || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
failed=()
step() {  # run one command, say how long it took, remember it if it failed
    local start=$SECONDS
    echo "=== $* (at ${SECONDS}s)"
    "$@" || failed+=("$*")
    echo "=== done in $((SECONDS - start))s"
}
profile_attention() {  # Nsight Compute on one TF32 attention launch (P = 128, 256 × 128 tokens)
    local ncu
    ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda*/bin/ncu \
        2>/dev/null | sort -V | tail -1)
    if [[ -z "$ncu" ]]; then echo "no ncu on this machine"; return 1; fi
    # launch 1 is the sweep's IEEE reference; launch 2 the configuration itself
    "$ncu" --clock-control none --kernel-name regex:attention_layer_norm --launch-skip 1 \
        --launch-count 1 --section SpeedOfLight --section LaunchStats --section Occupancy \
        --section SchedulerStats --section WarpStateStats --section InstructionStats \
        --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
        --section SourceCounters \
        $py bench/triton_sweep.py --precision tf32 --kernels attention --population 128 \
        --repeats 1 --knob QUERY_BLOCK=64 --knob KEY_BLOCK=32 --knob NUM_WARPS=4 "$@"
}
merged() {  # the JSON objects in the files named, merged (later files win; a missing file, as
    # a sweep that faulted leaves, adds nothing), for --config
    $py -c 'import json, os, sys
print(json.dumps({k: v for f in sys.argv[1:] if os.path.exists(f)
                  for k, v in json.load(open(f)).items()}))' "$@"
}
merged_json() {  # the JSON objects given as arguments, merged (later ones win)
    $py -c 'import json, sys
print(json.dumps({k: v for a in sys.argv[1:] for k, v in json.loads(a).items()}))' "$@"
}
fixed=(--device cuda --population 512 --batch 256 --seq-len 128 --skip-loop --repeats 5
       --models "paper dense" "paper factorized r4")
paper=(--device cuda --paper-scale --seq-len 1024 --median-length 200 --min-length 16 --skip-loop
       --repeats 3)
torch_ops=(env NEUROEVO_GPU_KERNELS=0)
case "$stage" in
core)
    step nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
    step $py -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
    step $py -m pytest -q tests/test_gpu_kernels.py tests/test_gpu.py
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32
    step $py bench/bench_lm.py "${fixed[@]}" --precision bf16
    step "${torch_ops[@]}" $py bench/bench_lm.py "${fixed[@]}" --precision tf32
    step $py bench/bench_lm.py "${fixed[@]}"
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" "paper factorized r4"
    ;;
more)
    step $py bench/triton_sweep.py --precision tf32
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" --length-bucket 0
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" --bucket-padding -1
    step "${torch_ops[@]}" $py bench/bench_lm.py "${fixed[@]}" --precision bf16
    step "${torch_ops[@]}" $py bench/bench_lm.py "${fixed[@]}" --compile
    step $py bench/bench_rl.py --device cuda --families atari mujoco
    step $py bench/bench_lm.py --device cuda --population 64 --batch 256 --seq-len 128 \
        --precision tf32 --models "paper dense" "paper factorized r4"
    ;;
faults)
    step $py -m pytest -q tests/test_gpu_kernels.py tests/test_gpu.py
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32
    probe=(--isolate 16 --population 64 --repeats 3 --unverified)
    step $py bench/triton_sweep.py "${probe[@]}" --precision tf32 --model "paper factorized r4"
    step $py bench/triton_sweep.py "${probe[@]}" --precision bf16 --model "paper dense"
    step $py bench/bench_lm.py "${fixed[@]}" --precision bf16
    ;;
next)
    unverified=(env NEUROEVO_GPU_KERNELS=unverified)
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" "paper factorized r4"
    step "${unverified[@]}" $py -m pytest -q tests/test_gpu_kernels.py -k tf32
    step "${unverified[@]}" $py bench/bench_lm.py "${fixed[@]}" --precision tf32 --models "paper factorized r4"
    step "${unverified[@]}" $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper factorized r4"
    step $py bench/bench_rl.py --device cuda --families car_racing
    ;;
long)
    step $py -m pytest -q tests/test_gpu_kernels.py tests/test_gpu.py
    step $py bench/triton_sweep.py --precision tf32 --kernels attention --batch 32 --seq-len 512
    step $py bench/triton_sweep.py --precision tf32 --kernels attention loss
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" "paper factorized r4"
    step cat /sys/fs/cgroup/cpu.max  # CarRacing's pool scaled 3.9x on 16 cores: a CPU quota?
    step $py bench/bench_rl.py --device cuda --families car_racing
    ;;
levers)
    unverified=(env NEUROEVO_GPU_KERNELS=unverified)
    all_on='{"ATTENTION_CAUSAL_SPLIT": 1, "ATTENTION_EXP2": 1, "ATTENTION_KV_STORED": 1, "LOSS_EXP2": 1, "FEED_FORWARD_SPLIT": 2}'
    attention=(--kernels attention --knob QUERY_BLOCK=32 --knob KEY_BLOCK=32 --knob NUM_WARPS=4
               --knob ATTENTION_CAUSAL_SPLIT=0,1 --knob ATTENTION_EXP2=0,1
               --knob ATTENTION_KV_STORED=0,1)
    step $py -m pytest -q tests/test_gpu_kernels.py tests/test_gpu.py
    # only tf32x3 unverified: bf16 launched as asked can fault and poison the whole process
    step "${unverified[@]}" $py -m pytest -q tests/test_gpu_kernels.py -k tf32x3
    step $py bench/triton_sweep.py --precision tf32 "${attention[@]}"
    step $py bench/triton_sweep.py --precision tf32 "${attention[@]}" --batch 32 --seq-len 512
    all_on_attention=(--kernels attention --batch 32 --seq-len 512 --knob ATTENTION_CAUSAL_SPLIT=1
                      --knob ATTENTION_EXP2=1 --knob ATTENTION_KV_STORED=1)
    step $py bench/triton_sweep.py --precision tf32 "${all_on_attention[@]}" \
        --knob QUERY_BLOCK=32,64 --knob KEY_BLOCK=32,64 --knob NUM_WARPS=4,8
    step $py bench/triton_sweep.py --precision tf32 "${all_on_attention[@]}" \
        --knob QUERY_BLOCK=32 --knob KEY_BLOCK=32 --knob NUM_WARPS=4 --knob NUM_STAGES=1,2,3,4
    step $py bench/triton_sweep.py --precision tf32 --kernels loss --knob LOSS_ROWS=128 \
        --knob VOCAB_BLOCK=64 --knob NUM_WARPS=4 --knob LOSS_EXP2=0,1 --knob NUM_STAGES=2,3,4
    step $py bench/triton_sweep.py --precision tf32 --kernels feed-forward \
        --knob FEED_FORWARD_ROWS=128,256 --knob NUM_WARPS=4,8 --knob FEED_FORWARD_SPLIT=1,2,4
    # the shipped constants first: the baseline on this machine (another H100 is another machine)
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32 --config "$all_on"
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense"
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" "paper factorized r4" --config "$all_on"
    step $py bench/triton_sweep.py --isolate 2 --unverified --precision tf32x3 --model "paper factorized r4" \
        --knob QUERY_BLOCK=32 --knob KEY_BLOCK=32 --knob FEED_FORWARD_ROWS=64,128 \
        --knob LOSS_ROWS=64,128 --knob VOCAB_BLOCK=64 --knob NUM_WARPS=4,8
    step "${unverified[@]}" $py bench/bench_lm.py "${fixed[@]}" --precision tf32x3
    step $py bench/bench_ga.py --device cuda --evaluate
    step cat /sys/fs/cgroup/cpu.max  # CarRacing's pool scaled 3.9x on 16 cores: a CPU quota?
    step $py bench/bench_rl.py --device cuda --families car_racing
    ;;
shipped)
    step $py -m pytest -q tests/test_gpu_kernels.py tests/test_gpu.py
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" "paper factorized r4"
    blocks=(--kernels attention --knob QUERY_BLOCK=32,64 --knob KEY_BLOCK=32 --knob NUM_WARPS=4
            --knob NUM_STAGES=2,3)
    step $py bench/triton_sweep.py --precision tf32 "${blocks[@]}"
    step $py bench/triton_sweep.py --precision tf32 "${blocks[@]}" --batch 32 --seq-len 512
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32 --config '{"QUERY_BLOCK": 64}'
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" --config '{"QUERY_BLOCK": 64}'
    # the causal split lost at 128 tokens and won 2% at 512: at the paper's lengths, same machine
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" --config '{"ATTENTION_CAUSAL_SPLIT": 1}'
    # stored keys and values widen the activations population_chunk budgets: buckets of 64
    # × 128 tokens went in chunks of 341 + 171 individuals instead of one of 512
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32 --pop-chunk 512
    # where a generation's kernel time goes at the paper's lengths: what to aim the next lever at
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" \
        "paper factorized r4" --repeats 1 --profile
    ;;
noise)
    step $py -m pytest -q tests/test_gpu_noise.py
    step $py bench/bench_noise.py --device cuda
    step $py bench/bench_noise.py --device cuda --model "paper factorized r4"
    step $py bench/bench_ga.py --device cuda --evaluate --torch-noise
    step $py bench/bench_ga.py --device cuda --evaluate
    ;;
defaults)
    split_off='{"ATTENTION_CAUSAL_SPLIT": 0}'
    step $py -m pytest -q tests/test_gpu_kernels.py tests/test_gpu.py tests/test_gpu_noise.py
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32 --models "paper dense" --config "$split_off"
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" "paper factorized r4"
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" --config "$split_off"
    ;;
winners)
    before='{"EMBED_KERNEL": 0, "LOSS_FACTOR_ON_CHIP": 0}'
    three=(--models "paper dense" "paper factorized r4" "paper factorized r1")
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32 "${three[@]}"
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32 "${three[@]}" --config "$before"
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" "paper factorized r4"
    step $py -m pytest -q tests/test_gpu_kernels.py tests/test_gpu.py \
        -k "factor or embedding_kernel or every_lever or agrees_across_devices"
    ;;
occupancy)
    # the sweeps' winners (the knobs swept over more than one value), for the generations below
    best=${OUT:-/tmp}
    rm -f "$best"/best-*.json
    # (on an H200, 2026-11-28, the attention's caps lost at 128 tokens: 8.49 ms uncapped, 8.94
    # at 168, 9.93 at 128; 32-query blocks 10.35 and 10.47)
    caps=(--kernels attention --knob KEY_BLOCK=32 --knob NUM_WARPS=4 --knob NUM_STAGES=3
          --knob QUERY_BLOCK=32,64 --knob ATTENTION_MAX_REGISTERS=0,168)
    loss=(--kernels loss --knob VOCAB_BLOCK=64 --knob NUM_WARPS=4 --knob LOSS_ROWS=64,128
          --knob LOSS_MAX_REGISTERS=0,168,128)
    step $py -m pytest -q tests/test_gpu_kernels.py -k "registers or every_lever or shift-and-split or aligned"
    step $py bench/triton_sweep.py --precision tf32 "${caps[@]}" \
        --best-config "$best/best-attention-128.json"
    step $py bench/triton_sweep.py --precision tf32 "${caps[@]}" --batch 32 --seq-len 512 \
        --best-config "$best/best-attention-512.json"
    step $py bench/triton_sweep.py --precision tf32 "${loss[@]}" --best-config "$best/best-loss.json"
    step $py bench/triton_sweep.py --precision tf32 "${loss[@]}" --model "paper factorized r4"
    at128=$(merged "$best/best-attention-128.json" "$best/best-loss.json")
    at512=$(merged "$best/best-attention-512.json" "$best/best-loss.json")
    echo "winners: at 128 tokens $at128; at 512 $at512"
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32 \
        --config '{"LOSS_SHIFT_BY_TARGET": 0, "LOSS_TAIL_SPLIT": 0}'
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32 --config "$at128"
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32 --config '{"ALIGNED_OPERANDS": 1}'
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" "paper factorized r4"
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" "paper factorized r4" \
        --config "$at512"
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" \
        --config '{"ALIGNED_OPERANDS": 1}'
    # Nsight Compute on the attention's winner at 128 tokens
    step profile_attention $($py -c 'import json, sys
print(" ".join(f"--knob {k}={v}" for k, v in json.load(open(sys.argv[1])).items()))' \
        "$best/best-attention-128.json")
    ;;
combined)
    # the second call after `occupancy`: its winners (best-*.json, copied from what it sent back
    # into bench/gpu_logs/ of the working tree) with the aligned rows, both settings, and the
    # kernel profile at the paper's lengths
    won=bench/gpu_logs
    at128=$(merged "$won/best-attention-128.json" "$won/best-loss.json")
    at512=$(merged "$won/best-attention-512.json" "$won/best-loss.json")
    aligned='{"ALIGNED_OPERANDS": 1}'
    echo "winners: at 128 tokens $at128; at 512 $at512"
    step $py bench/bench_lm.py "${fixed[@]}" --precision tf32 \
        --config "$(merged_json "$at128" "$aligned")"
    step $py bench/bench_lm.py "${paper[@]}" --precision tf32 --models "paper dense" "paper factorized r4" \
        --config "$(merged_json "$at512" "$aligned")" --profile
    ;;
*)
    echo "usage: bash bench/gpu_check.sh [core|more|faults|next|long|levers|shipped|noise|defaults|winners|occupancy|combined]" >&2
    exit 2
    ;;
esac
if (( ${#failed[@]} )); then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all steps passed"
