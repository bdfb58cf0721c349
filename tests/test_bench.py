"""The benchmarks still run end to end (their numbers are for bench/RESULTS.md, not for tests)."""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys

import pytest

import torch

from conftest import REPO, needs_cpu_kernels, needs_triton


def test_bench_lm_prints_every_figure_at_a_tiny_size():
    """bench_lm.py at P=4 with variable lengths in two buckets prints the ceiling, the bucket
    summary, and per model the engine, the unavoidable part, their ratio and the loop speed-up."""
    out = subprocess.run(
        [sys.executable, "bench/bench_lm.py", "--population", "4", "--batch", "4", "--seq-len",
         "16", "--repeats", "1", "--min-length", "4", "--length-bucket", "2",
         "--bucket-padding", "-1", "--models",
         "small dense", "paper factorized r1"], cwd=REPO, capture_output=True, text=True,
        check=True).stdout
    assert "GEMM ceiling" in out and "2 length bucket(s)" in out
    lines = [line for line in out.splitlines() if "engine / unavoidable" in line]
    assert len(lines) == 2 and all("speed-up" in line for line in lines)


def test_bench_lm_reports_how_far_a_lever_moves_the_fitness():
    """With a lever on (bf16 autocast here), each model line also prints the largest fitness
    deviation from the fp32 eager reference (on log-normal lengths in padding-bounded buckets).
    A factorized model, whose factor products run under autocast even with the CPU kernels on
    (a dense one's all go through the kernels, which ignore autocast: a deviation of 0 there
    could not show the lever was applied)."""
    out = subprocess.run(
        [sys.executable, "bench/bench_lm.py", "--population", "4", "--batch", "8", "--seq-len",
         "12", "--median-length", "6", "--repeats", "1", "--skip-loop", "--precision", "bf16",
         "--models", "paper factorized r4"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "max |Δ fitness| vs fp32 eager" in out and "bf16" in out
    deviation = float(out.split("max |Δ fitness| vs fp32 eager torch ops ")[1].split()[0])
    assert 0 < deviation < 0.25  # bf16 moved it, within the bf16 kernel tolerance
    padding = float(out.split("(padding ")[1].split("%")[0])
    assert "budget 5%" in out and 0 <= padding <= 5


def test_bench_lm_profiles_a_generation():
    """--profile prints, after the model's line, one generation's most costly ops with their
    calls, times and shares (the shares of the listed ops sum to at most 100%)."""
    out = subprocess.run(
        [sys.executable, "bench/bench_lm.py", "--population", "4", "--batch", "4", "--seq-len",
         "16", "--repeats", "1", "--skip-loop", "--models", "small dense", "--profile"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if "profile of one generation" in line)
    assert "engine / unavoidable" in lines[header - 1]
    rows = [line for line in lines[header + 1:] if " calls " in line]
    assert 1 <= len(rows) <= 12
    assert sum(float(row.rsplit(" ", 1)[1].rstrip("%")) for row in rows) <= 100.5


def test_profile_counts_each_kernel_once(monkeypatch):
    """On CUDA a torch op's device time is its kernels' and both are profiler events; the
    Triton kernels are kernels only. The profile's total counts the kernels alone (it counted
    torch's ops twice, 626 ms for a 584 ms generation on the H100); on CPU the ops' own time."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from bench_lm import own_time, profiled_events
    from types import SimpleNamespace

    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU
    events = [SimpleNamespace(key="aten::index", device_type=cpu, self_device_time_total=16.0,
                              self_cpu_time_total=3.0),
              SimpleNamespace(key="index_elementwise_kernel", device_type=cuda,
                              self_device_time_total=16.0, self_cpu_time_total=0.0),
              SimpleNamespace(key="attention_layer_norm_kernel", device_type=cuda,
                              self_device_time_total=300.0, self_cpu_time_total=0.0)]
    on_gpu = profiled_events(events, cuda=True)
    assert [e.key for e in on_gpu] == ["index_elementwise_kernel", "attention_layer_norm_kernel"]
    assert sum(own_time(e, True) for e in on_gpu) == 316.0
    assert [e.key for e in profiled_events(events, cuda=False)] == ["aten::index"]


@needs_cpu_kernels
def test_kernel_widths_times_every_build(monkeypatch):
    """bench/kernel_widths.py builds every candidate, checks it against the default's output
    and prints one row per build with a time and a ratio for each of the four workloads."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from kernel_widths import CANDIDATES

    out = subprocess.run([sys.executable, "bench/kernel_widths.py", "--population", "2",
                          "--repeats", "1"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "×)" in line]
    assert [row.split(" | ")[0][2:] for row in rows] == list(CANDIDATES)
    assert all(row.count("×)") == 4 for row in rows)


def test_mujoco_pool_prints_every_stepping_arrangement():
    """bench/mujoco_pool.py at a few steps: one environment, two processes, and the pool with 0
    and 2 workers (and 2 over fewer slots), each a positive rate."""
    out = subprocess.run([sys.executable, "bench/mujoco_pool.py", "--steps", "40", "--slots", "8"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    rates = re.findall(r"(?:: |= )([\d,]+) steps/s", out)
    assert len(rates) == 5 and all(int(rate.replace(",", "")) > 0 for rate in rates)
    assert [re.search(r"GymPool, (\d) workers, (\d+) slots", line).groups()
            for line in out.splitlines() if "GymPool" in line] == [
        ("0", "8"), ("2", "8"), ("2", "2")]


def test_bench_ga_times_every_part_of_a_generation_but_the_evaluation():
    """bench_ga.py at a tiny population prints each part of the GA around the forward (tell,
    the elite's chain, the checkpoint, the logs), the evaluation for scale, and their sum."""
    out = subprocess.run(
        [sys.executable, "bench/bench_ga.py", "--population", "8", "--elites", "2",
         "--generations", "2", "--evaluate", "--config", "configs/tinystories/factorized.yaml"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout
    parts = {line.split("|")[0].strip(): float(line.split("|")[1].split()[0])
             for line in out.splitlines() if line.endswith(" ms")}
    assert set(parts) == {"evaluate", "tell (rank, select, breed, mutate)", "elite seed chain",
                          "checkpoint: elites to host", "checkpoint: write", "logs",
                          "the rest (all but evaluate)"}
    assert all(math.isfinite(value) and value >= 0 for value in parts.values())
    rest = sum(v for k, v in parts.items() if k not in ("evaluate", "the rest (all but evaluate)"))
    assert abs(parts["the rest (all but evaluate)"] - rest) < 0.05


def test_matmul_ceiling_sizes_its_product_by_the_time_it_takes(monkeypatch):
    """The GEMM ceiling's product grows from 256 only while the next size would stay within
    MATMUL_PROBE_SECONDS, up to the device's maximum: a CPU whose bf16 products are emulated
    (a minute for one 2048³ product) measures a smaller one instead of stalling the bench."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import ceilings

    cpu = torch.device("cpu")
    monkeypatch.setattr(ceilings, "MATMUL_MAX_SIZE", {"cpu": 512})
    monkeypatch.setattr(ceilings, "MATMUL_PROBE_SECONDS", 0.0)
    flops_per_second, size = ceilings.matmul_ceiling(cpu, "fp32", 1)
    assert size == 256 and flops_per_second > 0
    monkeypatch.setattr(ceilings, "MATMUL_PROBE_SECONDS", float("inf"))
    assert ceilings.matmul_ceiling(cpu, "fp32", 1)[1] == 512


@needs_triton
def test_exp_ceiling_kernel_computes_its_chain(monkeypatch):
    """The kernel that measures a GPU's exponential rate really iterates v ← exp(−v) (run here
    through Triton's interpreter): a kernel the compiler could shortcut would time nothing."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from ceilings import exp_chain_kernel

    x = torch.rand(32, device="cuda" if torch.cuda.is_available() else "cpu")
    a, b = x.clone(), x + 0.5
    for _ in range(5):
        a, b = torch.exp(-a), torch.exp(-b)
    exp_chain_kernel()[(2,)](x, STEPS=5, BLOCK=16)
    torch.testing.assert_close(x, a + b)


@needs_triton
def test_triton_sweep_runs_every_kernel_through_the_interpreter():
    """bench/triton_sweep.py (meant for a GPU) times each Triton kernel under a configuration and
    checks it against the current one; on CPU it runs through the interpreter at a tiny size."""
    out = subprocess.run(
        [sys.executable, "bench/triton_sweep.py", "--device", "cpu", "--population", "2",
         "--batch", "2", "--seq-len", "20", "--repeats", "1", "--first-only",
         "--model", "paper factorized r4"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout
    best = [line for line in out.splitlines() if "| best" in line]
    assert [line.split("|")[0].strip() for line in best] == ["attention", "feed-forward", "loss",
                                                            "embedding"]
    deviations = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if "max |Δ|" in line]
    assert len(deviations) == 4 and max(deviations) < 1e-4


@needs_triton
def test_triton_sweep_tries_the_attention_levers():
    """`--knob` sweeps the attention levers (gpu.ATTENTION_*) on and off, here with
    split-TF32 products: all 8 combinations run and agree with the IEEE kernel."""
    out = subprocess.run(
        [sys.executable, "bench/triton_sweep.py", "--device", "cpu", "--population", "2",
         "--batch", "2", "--seq-len", "40", "--repeats", "1", "--kernels", "attention",
         "--precision", "tf32x3", "--knob", "QUERY_BLOCK=32", "--knob", "KEY_BLOCK=16",
         "--knob", "NUM_WARPS=4", "--knob", "ATTENTION_CAUSAL_SPLIT=0,1",
         "--knob", "ATTENTION_EXP2=0,1", "--knob", "ATTENTION_KV_STORED=0,1"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if "max |Δ|" in line]
    assert len({line.split("|")[1] for line in lines}) == 8
    assert max(float(line.rsplit(" ", 1)[1]) for line in lines) < 1e-4


@needs_triton
def test_triton_sweep_merges_the_winners_for_a_later_run(tmp_path):
    """`--best-config FILE` merges the winning values of the knobs swept over more than one
    value (here the query block and the register cap, which the interpreter accepts) into FILE,
    keeping what an earlier sweep put there, for bench_lm.py's --config."""
    best = tmp_path / "best.json"
    best.write_text('{"LOSS_ROWS": 64}')
    out = subprocess.run(
        [sys.executable, "bench/triton_sweep.py", "--device", "cpu", "--population", "2",
         "--batch", "2", "--seq-len", "40", "--repeats", "1", "--kernels", "attention",
         "--knob", "QUERY_BLOCK=16,32", "--knob", "KEY_BLOCK=16", "--knob", "NUM_WARPS=4",
         "--knob", "ATTENTION_MAX_REGISTERS=0,128", "--best-config", str(best)],
        cwd=REPO, capture_output=True, text=True, check=True).stdout
    winner = ast.literal_eval(out.split("| best ")[1].split(" at ")[0])
    assert json.loads(best.read_text()) == {
        "LOSS_ROWS": 64, "QUERY_BLOCK": winner["QUERY_BLOCK"],
        "ATTENTION_MAX_REGISTERS": winner["ATTENTION_MAX_REGISTERS"]}


@needs_triton
def test_triton_sweep_goes_on_past_a_configuration_that_fails():
    """A configuration Triton cannot build (a 24-query block: tl.arange needs a power of two)
    prints FAILED with the error, and the sweep goes on: the others run and the best is among
    them (on a lent GPU, one bad configuration must not cost the rest of the call)."""
    out = subprocess.run(
        [sys.executable, "bench/triton_sweep.py", "--device", "cpu", "--population", "2",
         "--batch", "2", "--seq-len", "40", "--repeats", "1", "--kernels", "attention",
         "--knob", "QUERY_BLOCK=24,32", "--knob", "KEY_BLOCK=16", "--knob", "NUM_WARPS=4"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "'QUERY_BLOCK': 24" in failed[0] and "power of 2" in failed[0]
    winner = ast.literal_eval(out.split("| best ")[1].split(" at ")[0])
    assert winner["QUERY_BLOCK"] == 32


def test_triton_sweep_picks_no_fast_configuration_that_computes_something_else(monkeypatch):
    """The sweep's best is the fastest configuration within --max-deviation of IEEE fp32: one
    that is faster but off (as Triton's miscompiled bf16 feed-forward was, by 5 nats) or NaN
    is passed over, and with none within, there is no best."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from triton_sweep import fastest_within

    results = [(1.0, {"QUERY_BLOCK": 16}, 5.2), (2.0, {"QUERY_BLOCK": 32}, 1.3e-2),
               (3.0, {"QUERY_BLOCK": 64}, 1.1e-2), (0.5, {"QUERY_BLOCK": 128}, math.nan)]
    assert fastest_within(results, 0.1) == (2.0, {"QUERY_BLOCK": 32})
    assert fastest_within(results[:1], 0.1) is None


def compile_check(*args: str) -> str:
    """bench/triton_compile_check.py run with args (sm_90a, no GPU needed): its output, after
    checking that it succeeded; skips where this Triton lacks the NVIDIA backend."""
    pytest.importorskip("triton.backends.nvidia.compiler")
    result = subprocess.run([sys.executable, "bench/triton_compile_check.py", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_kernels_compile_for_hopper_without_a_gpu():
    """Every kernel variant the paper's dense and factorized models launch compiles for sm_90a
    with Triton's compiler and ptxas (bench/triton_compile_check.py), in each precision the
    interpreter cannot exercise (TF32 and bf16 tensor-core products)."""
    stdout = compile_check("--models", "paper dense", "paper factorized r4",
                           "--precisions", "tf32", "bf16")
    lines = [line for line in stdout.splitlines() if "registers" in line]
    kernels = {line.split()[1] for line in lines}
    assert kernels == {"attention_layer_norm_kernel", "key_value_kernel",
                       "feed_forward_layer_norm_kernel", "negative_log_likelihood_kernel",
                       "embedding_rotary_kernel"}, stdout
    # per precision: the key/value pre-pass, attention, feed-forward and the embedding for each
    # encoding, one log-likelihood variant (the factorized model's rank-32 embedding is past
    # gpu.LOSS_FACTOR_ON_CHIP and reads as wide as the dense one's)
    assert len(lines) == 2 * 9


def test_attention_levers_and_split_tf32_compile_for_hopper():
    """Every lever compiles for sm_90a, those off by default too: the attention kernel with all
    four on, the key/value pre-pass, the loss with exp2, the target shift, the tail split and the
    embedding's factor, the feed-forward layer in chunks, the embedding kernel, and every kernel
    with split-TF32 products."""
    stdout = compile_check(
        "--models", "paper factorized r4", "--precisions", "tf32", "tf32x3", "--unverified",
        "--config",
        '{"ATTENTION_CAUSAL_SPLIT": 1, "ATTENTION_EXP2": 1, "ATTENTION_KV_STORED": 1, '
        '"ATTENTION_SHIFT_BY_DIAGONAL": 1, '
        '"LOSS_EXP2": 1, '
        '"LOSS_SHIFT_BY_TARGET": 1, "LOSS_TAIL_SPLIT": 1, "FEED_FORWARD_SPLIT": 2, '
        '"LOSS_FACTOR_ON_CHIP": 64, "EMBED_KERNEL": 1}')
    lines = [line for line in stdout.splitlines() if "registers" in line]
    assert {(line.split("→")[1].split()[0], line.split()[1]) for line in lines} == {
        (precision, kernel) for precision in ("tf32", "tf32x3")
        for kernel in ("attention_layer_norm_kernel", "key_value_kernel",
                       "feed_forward_layer_norm_kernel", "negative_log_likelihood_kernel",
                       "embedding_rotary_kernel")}


def test_shifted_softmaxes_compile_for_hopper():
    """The softmaxes without a running max (gpu.ATTENTION_SHIFT_BY_DIAGONAL,
    LOSS_SHIFT_BY_TARGET), each with its online fallback in the same kernel, and the loss's
    unmasked tiles (LOSS_TAIL_SPLIT) compile for sm_90a in dense TF32 launches (the test above
    has them with factor operands)."""
    stdout = compile_check(
        "--models", "paper dense", "--precisions", "tf32", "--config",
        '{"ATTENTION_SHIFT_BY_DIAGONAL": 1, "LOSS_SHIFT_BY_TARGET": 1, "LOSS_TAIL_SPLIT": 1}')
    compiled = {line.split()[1] for line in stdout.splitlines() if "registers" in line}
    assert {"attention_layer_norm_kernel", "negative_log_likelihood_kernel"} <= compiled


def test_register_caps_reach_ptxas():
    """gpu.ATTENTION_MAX_REGISTERS and LOSS_MAX_REGISTERS reach the compiler as Triton's maxnreg:
    compiled for sm_90a, the capped kernels use no more registers than asked (and spill what no
    longer fits), the others are left alone."""
    stdout = compile_check("--models", "paper dense", "--precisions", "tf32", "--config",
                           '{"ATTENTION_MAX_REGISTERS": 128, "LOSS_MAX_REGISTERS": 96}')
    used = {line.split()[1]: int(re.search(r"Used (\d+) registers", line)[1])
            for line in stdout.splitlines() if "registers" in line}
    assert used["attention_layer_norm_kernel"] <= 128
    assert used["negative_log_likelihood_kernel"] <= 96
    assert used["feed_forward_layer_norm_kernel"] > 128  # uncapped: 255 as shipped


def test_compile_check_writes_each_launchs_code_for_diffing(tmp_path):
    """`--ptx DIR` writes each launch's PTX instructions without comments or debug sections,
    and their opcode counts, so that two checkouts' shipped launches can be compared without a
    GPU (bench/RESULTS.md: the levers left the default launches' code unchanged)."""
    compile_check("--models", "small dense", "--precisions", "tf32", "--ptx", str(tmp_path))
    stems = {path.stem for path in tmp_path.iterdir()}
    assert {stem.split("-")[1] for stem in stems} == {
        "attention_layer_norm_kernel", "key_value_kernel", "feed_forward_layer_norm_kernel",
        "negative_log_likelihood_kernel", "embedding_rotary_kernel"}
    for stem in stems:
        code = (tmp_path / f"{stem}.ptx").read_text()
        assert ".entry" in code and ".debug" not in code and "//" not in code
        counts = (tmp_path / f"{stem}.ops").read_text().splitlines()
        ops = dict(line.split()[::-1] for line in counts)
        assert int(ops["ret"]) >= 1
    ops = (tmp_path / "tf32-attention_layer_norm_kernel-small_dense.ops").read_text()
    assert "ex2.approx" in ops and "mma" in ops  # the exponentials; TF32 tensor-core products


def test_noise_kernel_compiles_for_hopper_and_the_bench_runs_without_a_gpu():
    """bench_noise.py compiles the fused noise kernel for sm_90a (ptxas's registers), and on CPU
    times torch's path, saying that the kernel needs CUDA."""
    pytest.importorskip("triton.backends.nvidia.compiler")
    compiled = subprocess.run([sys.executable, "bench/bench_noise.py", "--compile-check"],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    assert "scaled_noise_kernel Used" in compiled.stdout
    timed = subprocess.run([sys.executable, "bench/bench_noise.py", "--device", "cpu", "--rows",
                            "2", "--repeats", "1"], cwd=REPO, capture_output=True, text=True,
                           check=True, timeout=600).stdout
    assert "torch ops (gaussian + addcmul)" in timed and "needs CUDA" in timed


def test_gpu_check_names_only_what_exists(monkeypatch):
    """bench/gpu_check.sh runs on a lent GPU with minutes of device time: a misspelt launch
    constant, model name or test selection would cost a call. Every constant it sets (`--knob
    NAME=`, JSON keys) is one of gpu.py's, every model one of the benches', the script parses,
    and each test selection of the stages not yet run (`occupancy*`) selects some test."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from bench_lm import MODELS
    from neuroevo.kernels import gpu as gpu_kernels

    script = (REPO / "bench" / "gpu_check.sh").read_text()
    assert subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu_check.sh")]).returncode == 0
    constants = set(re.findall(r"--knob ([A-Z][A-Z0-9_]*)=", script)) \
        | set(re.findall(r'\\?"([A-Z][A-Z0-9_]+)\\?"\s*:', script))
    assert constants and not {c for c in constants if not hasattr(gpu_kernels, c)}
    models = set(re.findall(r'"(paper [a-z0-9 ]+|small [a-z]+)"', script))
    assert models and models <= set(MODELS)
    stages = re.findall(r"^(occupancy[a-z-]*)\)\n(.*?)^    ;;", script, flags=re.M | re.S)
    selections = [(files, k) for _, body in stages
                  for files, k in re.findall(r"pytest -q ([^-]+?) -k \"([^\"]+)\"", body)]
    assert stages and selections
    for files, k in selections:
        listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-k", k,
                                 *files.split()], cwd=REPO, capture_output=True, text=True)
        # "-k" prints "n/m tests collected (…)", n the selected; none selected: exit code 5
        assert listed.returncode == 0 and re.search(r"^[1-9]\d*/\d+ tests collected",
                                                    listed.stdout, flags=re.M), (k, listed.stdout)


def test_every_kernel_lever_can_be_swept(monkeypatch):
    """Each lever of a kernel (gpu.py's ATTENTION_*, LOSS_*, FEED_FORWARD_* constants) is one of
    that kernel's knobs in bench/triton_sweep.py, so `--knob NAME=0,1` times it alone; a lever
    added without its knob would be timed only inside whole generations."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from triton_sweep import KNOBS
    from neuroevo.kernels import gpu as gpu_kernels

    kernel_of = {"ATTENTION_": "attention", "LOSS_": "loss", "FEED_FORWARD_": "feed-forward"}
    for name in (n for n in vars(gpu_kernels) if n.isupper()):
        for prefix, kernel in kernel_of.items():
            if name.startswith(prefix):
                assert name in KNOBS[kernel], f"{name} is not a knob of the {kernel} sweep"


def test_softmax_headroom_reads_a_population_and_a_runs_survivors(tmp_path):
    """bench/softmax_headroom.py prints, for the initial population and a run's checkpointed
    survivors, the largest attention score above its query's own key and the largest logit
    above its target's: both finite and ≥ 0 (each row's own term is among its maxima)."""
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "neuroevo.cli", "run", "configs/tinystories/dense.yaml",
                    "--preset", "quick", "--set", "ga.generations=1", "--out", str(run),
                    "--quiet", "--device", "cpu"], cwd=REPO, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "bench/softmax_headroom.py",
                          "configs/tinystories/dense.yaml", "--preset", "quick", "--run", str(run)],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if "above the query's own key" in line]
    assert len(lines) == 2 and "survivors of generation 1" in lines[1]
    for line in lines:
        excess = [float(x) for x in re.findall(r"(-?[\d.]+) nats", line)]
        assert len(excess) == 2 and all(math.isfinite(e) and e >= 0 for e in excess)
        assert re.search(r"\(\d+\.\d\d% of attention rows past 88\)", line)


def test_atari_lockstep_counts_the_emulation_paid_for_ended_episodes():
    """atari_lockstep.py evolves a tiny Frostbite population and prints, per generation, its
    episode lengths and emulated ÷ useful steps: P × the longest episode over their sum, which
    is at least 1 and is 1 only when every episode ran equally long; over 2 recycled slots
    every episode scores the same."""
    pytest.importorskip("ale_py")
    out = subprocess.run(
        [sys.executable, "bench/atari_lockstep.py", "--population", "4", "--generations", "2",
         "--max-steps", "40", "--threads", "1", "--slots", "2"], cwd=REPO, capture_output=True,
        text=True, check=True).stdout
    assert out.count("over 2 recycled slots") == 2 and "DIFFERENT" not in out
    rows = re.findall(r"generation (\d): episode lengths min (\d+), median \d+, max (\d+); "
                      r"emulated ([\d,]+) steps for ([\d,]+) useful: ×([\d.]+)", out)
    assert [row[0] for row in rows] == ["1", "2"]
    for _, shortest, longest, emulated, useful, ratio in rows:
        emulated, useful = int(emulated.replace(",", "")), int(useful.replace(",", ""))
        assert int(longest) <= 40 and emulated == 4 * int(longest) and useful <= emulated
        assert float(ratio) == pytest.approx(emulated / useful, abs=0.01)
        assert (float(ratio) == 1.0) == (int(shortest) == int(longest))
