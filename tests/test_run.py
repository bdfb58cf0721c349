"""Whole runs through the CLI: reproducibility, resume after kill -9, learning, clean failures."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import interrupt_at_checkpoint
from neuroevo.cli import main
from neuroevo.config import ConfigError, load_config
from neuroevo.kernels import cpu as cpu_kernels
from neuroevo.provenance import source_revision

CONFIGS = Path("configs/tinystories")
ENCODING_CONFIGS = ["dense", "factorized", "factorized-rank1", "small"]


def _run(config: str, out: Path, overrides: list[str], *extra: str) -> int:
    args = ["run", str(CONFIGS / f"{config}.yaml"), "--out", str(out), "--quiet", *extra]
    for item in overrides:
        args += ["--set", item]
    return main(args)


def test_run_writes_the_run_directory_contract(tmp_path: Path, tiny_lm_overrides) -> None:
    """A run leaves fitness.csv, timing.csv, elite.json (a few KB) and summary.json behind."""
    out = tmp_path / "run"
    assert _run("factorized", out, tiny_lm_overrides) == 0
    header = (out / "fitness.csv").read_text().splitlines()[0].split(",")
    assert header[:8] == ["generation", "best", "mean", "median", "std", "worst", "elite_mean",
                          "mr_mean"]
    assert len((out / "fitness.csv").read_text().splitlines()) == 1 + 3
    timing = (out / "timing.csv").read_text().splitlines()
    assert timing[0] == "generation,eval_seconds,wall_seconds" and len(timing) == 1 + 3
    assert (out / "elite.json").stat().st_size < 4096
    assert (out / "checkpoint" / "state.pt").is_file()
    last_best = float((out / "fitness.csv").read_text().splitlines()[-1].split(",")[1])
    elite = json.loads((out / "elite.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert elite["fitness"] == last_best == summary["final"]["best"] and elite["generation"] == 3
    assert summary["encoding"] == "factorized" and summary["params"]["searched"] > 0
    assert re.fullmatch(r"cpu \(.+, \d+ threads?\)", summary["device"])
    assert summary["finished_utc"].endswith("+00:00")  # when, in UTC, for the report's label
    assert summary["versions"]["commit"] == source_revision()  # which code, for the report
    assert summary["noise_kernel"] is False  # CPU: torch's ops (the kernel is for CUDA)
    # which build of the C kernels (their sums round by build): None only without them
    assert summary["cpu_kernel_layout"] == cpu_kernels.vector_layout()
    assert summary["cpu_kernels"] is (summary["cpu_kernel_layout"] is not None)
    assert not list(out.rglob(".*.tmp*"))  # no temporary of an atomic write left behind


def test_same_seed_same_log_and_different_seed_different_log(tmp_path: Path,
                                                             tiny_lm_overrides) -> None:
    """Same config and seed give a byte-identical fitness.csv; another seed gives another one."""
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        assert _run("dense", tmp_path / name, tiny_lm_overrides + [f"seed={seed}"]) == 0
    logs = {name: (tmp_path / name / "fitness.csv").read_bytes() for name in "abc"}
    assert logs["a"] == logs["b"]
    assert logs["a"] != logs["c"]


# A run in a child process that checkpoints after every generation and SIGKILLs itself when it
# is about to write its 4th checkpoint: generation 4 is in the log, the checkpoint is generation
# 3's. Deterministic, unlike killing from outside at a moment that depends on the machine's speed.
_SELF_KILLING_RUN = """
import os, signal, sys
import neuroevo.run
from neuroevo.cli import main
from neuroevo.config import load_config
from neuroevo.provenance import source_revision

save, calls = neuroevo.run.atomic_torch_save, []
def save_or_die(state, path):
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    calls.append(path)
    save(state, path)
neuroevo.run.atomic_torch_save, neuroevo.run.CHECKPOINT_SECONDS = save_or_die, 0.0
sys.exit(main(sys.argv[1:]))
"""


def test_kill_minus_nine_then_resume_reproduces_the_log(tmp_path: Path, tiny_lm_overrides) -> None:
    """A run killed with SIGKILL mid-run (its log one generation ahead of its last checkpoint)
    and resumed writes the uninterrupted run's fitness.csv, byte for byte."""
    overrides = tiny_lm_overrides + ["ga.generations=7"]
    assert _run("factorized", tmp_path / "whole", overrides) == 0

    out = tmp_path / "killed"
    command = [sys.executable, "-c", _SELF_KILLING_RUN, "run", str(CONFIGS / "factorized.yaml"),
               "--out", str(out), "--quiet"] + [a for o in overrides for a in ("--set", o)]
    process = subprocess.run(command, capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL, process.stderr
    fitness = out / "fitness.csv"
    assert len(fitness.read_text().splitlines()) - 1 == 4 and not (out / "summary.json").exists()
    assert not list(out.rglob(".*.tmp*"))  # SIGKILL struck between writes: nothing half-written

    assert _run("factorized", out, overrides, "--resume") == 0
    assert fitness.read_bytes() == (tmp_path / "whole" / "fitness.csv").read_bytes()


def test_resume_after_the_last_generation_but_before_the_summary(tmp_path: Path,
                                                                 tiny_lm_overrides) -> None:
    """Killed between the last checkpoint and summary.json: --resume evolves nothing more and
    writes the summary from the log, with the same final numbers."""
    out = tmp_path / "run"
    assert _run("small", out, tiny_lm_overrides) == 0
    fitness = (out / "fitness.csv").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").unlink()
    assert _run("small", out, tiny_lm_overrides, "--resume") == 0
    assert (out / "fitness.csv").read_bytes() == fitness
    assert json.loads((out / "summary.json").read_text())["final"] == summary["final"]


def test_resume_redoes_log_rows_written_after_the_checkpoint(tmp_path: Path, tiny_lm_overrides,
                                                             monkeypatch) -> None:
    """Interrupted between a generation's log rows and its checkpoint, the log is one generation
    ahead: --resume cuts it back to the checkpoint and the redone generation writes the same
    bytes as an uninterrupted run."""
    overrides = tiny_lm_overrides + ["ga.generations=4"]
    whole, out = tmp_path / "whole", tmp_path / "run"
    assert _run("small", whole, overrides) == 0
    restore = interrupt_at_checkpoint(monkeypatch, 4)
    assert _run("small", out, overrides) == 130
    assert len((out / "fitness.csv").read_text().splitlines()) == 1 + 4
    restore()
    assert _run("small", out, overrides, "--resume") == 0
    assert (out / "fitness.csv").read_bytes() == (whole / "fitness.csv").read_bytes()


def test_checkpoints_are_spaced_in_time(tmp_path: Path, tiny_lm_overrides,
                                        monkeypatch) -> None:
    """With generations faster than CHECKPOINT_SECONDS (an infinite interval here, so that no
    clock decides the test), runs are checkpointed after the first and the last generation only;
    with a zero interval, after every one. Both write the same log."""
    import neuroevo.run

    save, generations = neuroevo.run.atomic_torch_save, []
    monkeypatch.setattr(neuroevo.run, "atomic_torch_save", lambda state, path: (
        generations.append(state["ga"]["generation"]), save(state, path)))
    monkeypatch.setattr(neuroevo.run, "CHECKPOINT_SECONDS", float("inf"))
    overrides = tiny_lm_overrides + ["ga.generations=5"]
    assert _run("small", tmp_path / "spaced", overrides) == 0
    assert generations == [2, 6]  # the state after generations 1 and 5: the next to run
    monkeypatch.setattr(neuroevo.run, "CHECKPOINT_SECONDS", 0.0)
    generations.clear()
    assert _run("small", tmp_path / "every", overrides) == 0
    assert generations == [2, 3, 4, 5, 6]
    assert ((tmp_path / "spaced" / "fitness.csv").read_bytes()
            == (tmp_path / "every" / "fitness.csv").read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("config", ENCODING_CONFIGS)
def test_quick_preset_learns(tmp_path: Path, config: str) -> None:
    """On the quick preset every encoding's best fitness rises by > 0.1 nats in 20 generations."""
    cache = os.environ["NEUROEVO_TEST_CACHE"]
    assert _run(config, tmp_path / config, [f"task.cache_dir={cache}"], "--preset", "quick") == 0
    rows = (tmp_path / config / "fitness.csv").read_text().splitlines()[1:]
    first, last = (float(rows[i].split(",")[1]) for i in (0, -1))
    assert len(rows) == 20
    assert last > first + 0.1, f"{config}: best {first:.3f} → {last:.3f}"


@pytest.mark.parametrize("override, message", [
    (["ga.populaton=8"], "unknown key ga.populaton"),
    (["encoding.kind=lowrank"], "unknown encoding 'lowrank'"),
    (["task.name=chess"], "unknown task 'chess'"),
    (["ga.population=ten"], "ga.population: expected int"),
    (["encoding.kind=factorized", "encoding.rank=64"], "rank 64 for layer"),
    (["task.text=data/missing.txt"], "data/missing.txt"),
    (["encoding.kind=factorized", "encoding.ranks.embeding=8"],
     "unknown layer type encoding.ranks.embeding for task tinystories (valid: embedding, qkv"),
    (["ga.generations=0"], "ga.generations must be at least 1"),
    (["ga.population=-3"], "ga.population must be at least 1"),
    (["ga.mutation_rates=0.5"], "expected a list, got 0.5 (one item is written [0.5])"),
    (["device=gpu"], "unknown device 'gpu' (valid: auto, cpu, cuda)"),
    (["seed=-1"], "seed must be an integer from 0 to 2^32 − 1, got -1"),
    (["seed=true"], "seed must be an integer from 0 to 2^32 − 1, got True"),
    (["seed=4294967296"], "seed must be an integer from 0 to 2^32 − 1, got 4294967296"),
    (["ga.population"], "expected key=value"),
])
def test_bad_config_fails_with_one_line_and_no_run_dir(tmp_path: Path, tiny_lm_overrides, capsys,
                                                       override: list[str], message: str) -> None:
    """Each bad config stops with exit 2, one stderr line naming the problem, and no run dir."""
    out = tmp_path / "never"
    assert _run("dense", out, tiny_lm_overrides + override) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_a_layer_types_rank_may_be_null_to_leave_it_dense() -> None:
    """`--set encoding.ranks.embedding=null` keeps that layer type dense under the factorized
    kind (a layer-wise ablation), a run of its own (another digest); a rank that is neither an
    integer nor null is refused."""
    base = load_config(CONFIGS / "factorized.yaml")
    mixed = load_config(CONFIGS / "factorized.yaml", overrides=["encoding.ranks.embedding=null"])
    assert mixed.encoding.rank_for("embedding") is None
    assert mixed.encoding.rank_for("qkv") == base.encoding.rank_for("qkv") == 4
    assert mixed.digest() != base.digest()
    with pytest.raises(ConfigError, match="encoding.ranks.embedding: expected int"):
        load_config(CONFIGS / "factorized.yaml", overrides=["encoding.ranks.embedding=four"])


def test_unknown_preset_names_the_choices(tmp_path: Path, capsys) -> None:
    """An unknown preset is refused with the presets the config does define."""
    assert _run("dense", tmp_path / "x", [], "--preset", "huge") == 2
    assert "unknown preset 'huge' (choices: quick, cpu)" in capsys.readouterr().err


def test_loading_every_familys_config_imports_no_torch() -> None:
    """`load_config` (which the workflow runs on every run's config at each DAG build) needs only
    `neuroevo.sections`: no torch (two seconds to import), no simulator, no tokenizer. The CLI
    imports them only in the commands that use them, so `--help` and a config error are instant."""
    configs = ["configs/tinystories/factorized.yaml", "configs/atari/frostbite/factorized.yaml",
               "configs/car_racing/factorized.yaml", "configs/mujoco/halfcheetah/factorized.yaml"]
    script = ("import sys\nimport neuroevo.cli\nfrom neuroevo.config import load_config\n"
              f"for path in {configs!r}:\n    load_config(path, preset='quick')\n"
              "print(sorted({'torch', 'mujoco', 'tokenizers', 'Box2D'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_describe_matches_a_hand_count(capsys, tiny_lm_overrides) -> None:
    """`describe --json` reports the paper model's genome (99,507) and per-layer searched sizes."""
    cache = [o for o in tiny_lm_overrides if o.startswith("task.cache_dir")]
    args = ["describe", str(CONFIGS / "factorized.yaml"), "--json", "--preset", "quick"]
    for item in cache + ["task.vocab_size=2048"]:
        args += ["--set", item]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    # hand count, factorized paper model: embedding (2051·32 + 32·32) + out bias 2051;
    # per block: 3 × (32·4 + 4·16 + 16) q/k/v, (16·4 + 4·32 + 32) out, (32·4 + 4·128 + 128) ff1,
    # (128·4 + 4·32 + 32) ff2, 2 × 64 frozen layer norm
    block = 3 * (128 + 64 + 16) + (64 + 128 + 32) + (128 + 512 + 128) + (512 + 128 + 32)
    searched = 2051 * 32 + 32 * 32 + 2051 + 3 * block
    assert report["totals"]["searched"] == searched
    assert report["totals"]["genome"] == searched + 3 * 128 == 75_955
    assert report["totals"]["network"] == 99_507
    rows = {row["layer"]: row for row in report["layers"]}
    assert rows["blocks.0.ff1"]["searched"] == 128 + 512 + 128
    assert rows["embed"]["encoding"] == "factorized r=32"


def test_describe_prints_a_table_with_totals(capsys, tiny_lm_overrides) -> None:
    """Without --json, describe prints one row per layer and the totals line."""
    args = ["describe", str(CONFIGS / "factorized.yaml"), "--preset", "quick"]
    for item in [o for o in tiny_lm_overrides if o.startswith("task.cache_dir")]:
        args += ["--set", item]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "embed" in out and "factorized" in out  # narrow terminals wrap long cells
    assert "network weights 99,507 · genome 75,955 · searched 75,571" in out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_fails_in_one_line(tmp_path: Path, tiny_lm_overrides,
                                                         capsys) -> None:
    assert _run("small", tmp_path / "x", tiny_lm_overrides, "--device", "cuda") == 2
    error = capsys.readouterr().err.strip()
    assert "torch sees no CUDA device: use --device cpu" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_describe_needs_no_data(capsys, tmp_path: Path) -> None:
    """`describe` of the paper config on a machine without TinyStories prints the paper's sizes
    (the shapes need only the vocabulary size) and says what it assumed."""
    assert main(["describe", str(CONFIGS / "factorized.yaml"), "--json",
                 "--set", f"task.text={tmp_path / 'absent.txt'}"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["genome"] == 75_955 and report["totals"]["network"] == 99_507
    assert "text not found at" in report["note"] and "absent.txt" in report["note"]


def test_describe_without_a_tokenizer_file_says_so(capsys, tmp_path: Path) -> None:
    """A missing `task.tokenizer` file is what `describe`'s note names, not the text (which is
    there): the note carries the data layer's own one-line reason."""
    assert main(["describe", str(CONFIGS / "dense.yaml"), "--json", "--preset", "quick",
                 "--set", f"task.tokenizer={tmp_path / 'absent.json'}"]) == 0
    note = json.loads(capsys.readouterr().out)["note"]
    assert "task.tokenizer" in note and "absent.json" in note and "quickstories" not in note


@pytest.mark.parametrize("name, message", [("missing.json", "does not exist"),
                                           ("fitness.csv", "holds no seed chain")])
def test_replay_of_a_file_that_is_no_elite_fails_in_one_line(tmp_path: Path, capsys, name: str,
                                                            message: str) -> None:
    (tmp_path / "fitness.csv").write_text("generation,best\n1,0.5\n")
    assert main(["replay", str(tmp_path / name)]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "elite.json" in error and len(error.splitlines()) == 1


def test_replay_redevelops_the_elite(tmp_path: Path, tiny_lm_overrides, capsys) -> None:
    """`replay elite.json` re-develops the chain and reproduces the logged fitness."""
    out = tmp_path / "run"
    assert _run("small", out, tiny_lm_overrides) == 0
    capsys.readouterr()
    assert main(["replay", str(out / "elite.json"), "--device", "cpu"]) == 0
    assert "matches the logged" in capsys.readouterr().out


def test_replay_after_the_text_was_edited_says_the_data_changed(tmp_path: Path,
                                                                tiny_lm_overrides, capsys) -> None:
    """elite.json records the run's data hash: replayed after its text was edited, the elite
    does not match, and replay says why."""
    text = tmp_path / "stories.txt"
    text.write_text(Path("data/quickstories.txt").read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "run"
    assert _run("small", out, [*tiny_lm_overrides, f"task.text={text}"]) == 0
    assert len(json.loads((out / "elite.json").read_text())["data_sha256"]) == 64
    stories = text.read_text(encoding="utf-8").splitlines(keepends=True)
    text.write_text("".join(reversed(stories)), encoding="utf-8")  # other stories first
    capsys.readouterr()
    assert main(["replay", str(out / "elite.json"), "--device", "cpu"]) == 1
    printed = capsys.readouterr().out
    assert "differs from the logged" in printed and "the run's data have changed" in printed


def test_elite_json_develops_to_the_checkpointed_weights_bit_for_bit(
        tmp_path: Path, tiny_lm_overrides) -> None:
    """The few-KB seed chain in elite.json is the elite: developed from its seeds alone it gives
    exactly the weights the GA held for it (the checkpoint's first elite row), not just weights
    that score the same."""
    from neuroevo.config import config_from_dict
    from neuroevo.genome import develop, load_genome
    from neuroevo.run import build_task

    out = tmp_path / "run"
    assert _run("factorized", out, tiny_lm_overrides) == 0
    genome, meta = load_genome(out / "elite.json")
    layout = build_task(config_from_dict(meta["config"]), torch.device("cpu")).layout
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=False)["ga"]
    assert genome.to_dict() == state["elites"][0]
    assert torch.equal(develop(genome, layout)[0], state["elite_theta"][0])


def test_existing_run_dir_needs_resume(tmp_path: Path, tiny_lm_overrides, capsys) -> None:
    """Starting a run over a finished one is refused unless --resume is given."""
    out = tmp_path / "run"
    assert _run("small", out, tiny_lm_overrides) == 0
    assert _run("small", out, tiny_lm_overrides) == 2
    assert "--resume" in capsys.readouterr().err


def test_resuming_a_finished_run_checks_its_config(tmp_path: Path, tiny_lm_overrides,
                                                   capsys) -> None:
    """--resume of a finished run returns it for the same config and refuses another one
    (it would otherwise report the old result as if the new config had produced it)."""
    out = tmp_path / "run"
    assert _run("small", out, tiny_lm_overrides) == 0
    assert _run("small", out, tiny_lm_overrides, "--resume") == 0
    capsys.readouterr()
    assert _run("small", out, tiny_lm_overrides + ["ga.generations=4"], "--resume") == 2
    assert "another config or other data" in capsys.readouterr().err


def test_restart_changed_needs_resume(tmp_path: Path, tiny_lm_overrides, capsys) -> None:
    assert _run("small", tmp_path / "x", tiny_lm_overrides, "--restart-changed") == 2
    assert "--restart-changed only applies with --resume" in capsys.readouterr().err


def test_the_workflows_resume_restarts_a_run_whose_config_or_data_changed(
        tmp_path: Path, tiny_lm_overrides) -> None:
    """With --restart-changed (the workflow's flag) a run directory written by another config,
    or on a text that has since changed, is cleared and run again: its log is then the new
    run's own, byte for byte."""
    text = tmp_path / "stories.txt"
    text.write_text(Path("data/quickstories.txt").read_text())
    overrides = tiny_lm_overrides + [f"task.text={text}"]
    out, fresh = tmp_path / "run", tmp_path / "fresh"
    assert _run("small", out, overrides) == 0
    longer = overrides + ["ga.generations=4"]
    assert _run("small", out, longer, "--resume", "--restart-changed") == 0
    assert _run("small", fresh, longer) == 0
    assert (out / "fitness.csv").read_bytes() == (fresh / "fitness.csv").read_bytes()
    # the same path, other stories: refused by --resume alone, restarted with the flag
    text.write_text("\n".join(reversed(text.read_text().splitlines())) + "\n")
    assert _run("small", out, longer, "--resume") == 2
    assert _run("small", out, longer, "--resume", "--restart-changed") == 0
    assert (out / "fitness.csv").read_bytes() != (fresh / "fitness.csv").read_bytes()
    assert _run("small", tmp_path / "fresh-on-new-text", longer) == 0
    assert (out / "fitness.csv").read_bytes() == (
        tmp_path / "fresh-on-new-text" / "fitness.csv").read_bytes()


@pytest.mark.parametrize("pop_chunk", [0, 2])
def test_length_buckets_leave_the_fitness_unchanged(tiny_lm_overrides: list[str],
                                                    pop_chunk: int) -> None:
    """Scoring the evaluation set in length buckets (padding trimmed per bucket: 3 stories each,
    or no padding at all) gives the same fitness as one batch padded to the longest story, to
    float rounding — also when the population is split into uneven chunks (5 in chunks of 2)."""
    import torch

    from neuroevo.config import load_config
    from neuroevo.genome import initial_weights
    from neuroevo.run import build_task

    fitness, buckets = {}, {}
    for bucket, padding in ((0, "null"), (3, "null"), (64, 0.0)):
        config = load_config("configs/tinystories/dense.yaml", None, tiny_lm_overrides + [
            "device=cpu", "task.max_len=null", "task.n_sequences=8", f"task.length_bucket={bucket}",
            f"task.bucket_padding={padding}", f"task.pop_chunk={pop_chunk if bucket else 0}"])
        task = build_task(config, torch.device("cpu"))
        theta = initial_weights(task.layout, list(range(5)), torch.device("cpu"))
        fitness[bucket] = task.evaluate(theta, 1).fitness
        buckets[bucket] = task.summary()["eval_buckets"]
    lengths = task.batch(1).lengths
    assert int(lengths.max()) > int(lengths.min()) + 20  # the padding that buckets trim is real
    assert buckets == {0: 1, 3: 3, 64: len(set(lengths.tolist()))}  # no padding: one per length
    torch.testing.assert_close(fitness[3], fitness[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fitness[64], fitness[0], atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")  # torch.compile's
@pytest.mark.parametrize("precision, compiled, tolerance", [
    ("tf32", False, 1e-6),   # no TF32 on a CPU: the same numbers
    ("tf32x3", False, 1e-6),  # split TF32 products are the Triton kernels' (GPU): the same here
    ("bf16", False, 0.05),   # bfloat16 matmuls: close, not equal (the stated tolerance, nats)
    ("fp32", True, 1e-5),    # torch.compile of the population forward
], ids=["tf32", "tf32x3", "bf16", "compile"])
def test_gpu_levers_keep_the_fitness_within_their_tolerance(tiny_lm_overrides: list[str],
                                                           precision, compiled, tolerance):
    """The issue-#6 levers (task.precision, task.compile) run on CPU too and move the fitness
    from the fp32 eager reference by no more than their tolerance. TF32 and split TF32 change
    nothing on a CPU, so for them the test checks that the lever reached the process-wide
    settings the GPU kernels read; their numbers are test_gpu_kernels' (on a GPU)."""
    import torch

    from neuroevo.config import load_config
    from neuroevo.genome import initial_weights
    from neuroevo.kernels import gpu as gpu_kernels
    from neuroevo.run import build_task

    fitness = {}
    try:
        for key, extra in (("reference", []),
                           ("lever", [f"task.precision={precision}",
                                      f"task.compile={str(compiled).lower()}"])):
            config = load_config("configs/tinystories/dense.yaml", None,
                                 tiny_lm_overrides + ["device=cpu", *extra])
            task = build_task(config, torch.device("cpu"))
            theta = initial_weights(task.layout, list(range(4)), torch.device("cpu"))
            fitness[key] = task.evaluate(theta, 1).fitness
            if key == "lever":
                assert torch.get_float32_matmul_precision() == (
                    "high" if precision == "tf32" else "highest")
                assert gpu_kernels.split_tf32() == (precision == "tf32x3")
    finally:  # the precision settings are process-wide, as a run sets them
        torch.set_float32_matmul_precision("highest")
        gpu_kernels.use_split_tf32(False)
    torch.testing.assert_close(fitness["lever"], fitness["reference"], atol=tolerance, rtol=0)


@pytest.mark.parametrize("override, message", [
    ("task.n_sequences=0", "task.n_sequences must be ≥ 1, got 0"),
    ("task.max_len=1", "task.max_len must be ≥ 2 (<s> and one target) or null, got 1"),
    ("task.vocab_size=5", "task.vocab_size must be between 6"),
    ("task.vocab_size=40000", "and 32765 (int16 model ids), got 40000"),
    ("task.token_chunk=0", "task.token_chunk must be ≥ 1, got 0"),
    ("task.n_stories=0", "task.n_stories must be ≥ 1 or null"),
    ("task.pop_chunk=-1", "task.pop_chunk must be ≥ 0 (0 = auto), got -1"),
    ("model.rotary_dims=3", "model.rotary_dims must be even and between 0 and model.hidden"),
])
def test_bad_language_sizes_fail_with_one_line_and_no_run_dir(
        tmp_path: Path, tiny_lm_overrides, capsys, override: str, message: str) -> None:
    """Language-task sizes the data layer or the scorer would trip over mid-build or mid-run
    (range() with a step of 0, a vocabulary beyond int16 ids) are refused at config time."""
    out = tmp_path / "never"
    assert _run("small", out, tiny_lm_overrides + [override]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("sampling", ["fixed", "sampled"])
def test_more_eval_stories_than_the_corpus_fails_before_the_run_dir(
        tmp_path: Path, tiny_lm_overrides, capsys, sampling: str) -> None:
    """task.n_sequences above the corpus's stories stops before the run directory is made, also
    when the batches are sampled (drawn only at the first evaluation)."""
    out = tmp_path / "never"
    overrides = tiny_lm_overrides + [f"task.sampling={sampling}", "task.n_sequences=301"]
    assert _run("small", out, overrides) == 2
    error = capsys.readouterr().err.strip()
    assert "task.n_sequences (301) is more than the 300 stories of the corpus" in error
    assert len(error.splitlines()) == 1 and not out.exists()


def test_section_errors_name_the_config_file(tmp_path: Path, tiny_lm_overrides, capsys) -> None:
    """A bad key inside a section names the config file it was checked against, as the
    top-level errors do, and the --set that brought it."""
    assert _run("dense", tmp_path / "never", tiny_lm_overrides + ["ga.populaton=8"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {CONFIGS / 'dense.yaml'}: unknown key ga.populaton")
    assert error.endswith("(from --set ga.populaton=8)") and len(error.splitlines()) == 1


def test_an_error_names_the_preset_and_set_values_it_involves(tmp_path: Path, capsys) -> None:
    """A value refused because of what a preset and a --set combined names both, and only
    them: the typo may be in the file or in either."""
    assert _run("dense", tmp_path / "never", ["ga.elites=40"], "--preset", "quick") == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith("ga.elites (40) must be between 1 and ga.population (32) "
                          "(from preset 'quick'; --set ga.elites=40)")
    # a key is named only as a whole name: `seed` is not part of `encoding.sparse_seed`
    assert _run("dense", tmp_path / "never", ["seed=0", "encoding.sparse_seed=-1"]) == 2
    assert capsys.readouterr().err.strip().endswith("(from --set encoding.sparse_seed=-1)")


def test_an_out_that_is_a_file_fails_in_one_line_before_the_task(
        tmp_path: Path, tiny_lm_overrides, capsys, monkeypatch) -> None:
    """--out naming a file, or a path under one, is refused before the task is built (its data
    prepared), not by a traceback at the first write."""
    import neuroevo.run

    def never(*args):
        raise AssertionError("the task was built")

    monkeypatch.setattr(neuroevo.run, "build_task", never)
    typo = tmp_path / "typo.yaml"
    typo.write_text("not a directory\n")
    for out in (typo, typo / "run"):
        assert _run("dense", out, tiny_lm_overrides) == 2
        error = capsys.readouterr().err.strip()
        assert error == f"error: --out {out}: {typo} is a file, not a directory: choose another --out"
    assert typo.read_text() == "not a directory\n"


def test_a_piped_progress_bar_is_drawn_at_the_start_and_the_end_only(
        tmp_path: Path, tiny_lm_overrides, capsys, monkeypatch) -> None:
    """A job's log (stderr a file or pipe) gets the bar every 30 s, not at each generation: an
    hours-long run would otherwise log thousands of refreshes. The bar names the run directory.
    (The interval is stretched here so that a slow CI machine cannot add a draw.)"""
    import neuroevo.logs
    import neuroevo.run

    assert neuroevo.logs.progress_interval() == 30.0  # pytest's stderr is no terminal
    monkeypatch.setattr(neuroevo.run, "progress_interval", lambda: 1e9)
    out = tmp_path / "run"
    assert main(["run", str(CONFIGS / "dense.yaml"), "--out", str(out),
                 *[arg for item in tiny_lm_overrides for arg in ("--set", item)]]) == 0
    draws = [d for d in capsys.readouterr().err.replace("\r", "\n").splitlines() if d.strip()]
    assert len(draws) == 2 and all(d.startswith(f"{out}: ") for d in draws)
    assert "3/3" in draws[-1] and "best=" in draws[-1]


def test_a_rank_too_large_stops_before_a_corpus_is_tokenised(
        tmp_path: Path, tiny_lm_overrides, capsys) -> None:
    """The model's shapes are checked before a fresh text is tokenised (minutes for the
    paper's 10,000 stories): no cache entry is made for a run that cannot start."""
    cache = tmp_path / "cache"
    overrides = tiny_lm_overrides + [f"task.cache_dir={cache}", "encoding.rank=40"]
    assert _run("factorized", tmp_path / "never", overrides) == 2
    assert "rank 40 for layer" in capsys.readouterr().err
    assert not cache.exists() and not (tmp_path / "never").exists()


def test_set_fills_a_section_left_empty_in_the_yaml(tmp_path: Path) -> None:
    """`ga:` with nothing under it (YAML's null) is an empty section: --set can fill it."""
    from neuroevo.config import load_config

    config = tmp_path / "empty-ga.yaml"
    config.write_text("task:\n  name: tinystories\nga:\n")
    assert load_config(config, overrides=["ga.population=64"]).ga.population == 64


def test_an_empty_section_in_a_child_config_keeps_the_parents(tmp_path: Path) -> None:
    """A child config's empty section (`ga:` alone) changes nothing, as `ga: {}` does, instead
    of replacing the parent's section with the defaults."""
    from neuroevo.config import load_config

    (tmp_path / "parent.yaml").write_text("task:\n  name: tinystories\n"
                                          "ga:\n  population: 64\n  elites: 4\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: parent.yaml\nga:\n")
    assert (load_config(child).ga.population, load_config(child).ga.elites) == (64, 4)


def _elite(tmp_path: Path, overrides: list[str], **metadata) -> Path:
    """An elite.json of an unmutated genome of configs/tinystories/small.yaml; `metadata`
    replaces (None: drops) what a run writes beside the chain."""
    from neuroevo.config import load_config
    from neuroevo.genome import Genome, save_genome

    config = load_config(CONFIGS / "small.yaml", overrides=overrides + ["device=cpu"])
    written = {"fitness": -5.0, "generation": 1, "individual": 0, "config": config.to_dict(),
               **metadata}
    path = tmp_path / "elite.json"
    save_genome(path, Genome(0), **{k: v for k, v in written.items() if v is not None})
    return path


def test_replay_that_differs_from_the_log_exits_1(tmp_path: Path, tiny_lm_overrides,
                                                  capsys) -> None:
    """A replayed fitness that differs from the logged one is said, and the exit status is 1,
    so a script or CI job notices an elite that does not reproduce."""
    elite = _elite(tmp_path, tiny_lm_overrides, fitness=123.0)
    assert main(["replay", str(elite), "--device", "cpu"]) == 1
    assert "differs from the logged 123" in capsys.readouterr().out


def test_replay_with_video_of_the_language_task_fails_in_one_line(tmp_path: Path,
                                                                  tiny_lm_overrides,
                                                                  capsys) -> None:
    """--video for a language model is a one-line user error, and no video file appears."""
    elite, video = _elite(tmp_path, tiny_lm_overrides), tmp_path / "elite.mp4"
    assert main(["replay", str(elite), "--device", "cpu", "--video", str(video)]) == 2
    error = capsys.readouterr().err.strip()
    assert "--video is for the RL tasks" in error and len(error.splitlines()) == 1
    assert not video.exists()


@pytest.mark.parametrize("key", ["config", "generation", "fitness"])
def test_replay_of_an_elite_without_its_metadata_fails_in_one_line(tmp_path: Path, capsys,
                                                                   key: str) -> None:
    """An elite.json missing what replay reads beside the chain is a one-line user error."""
    elite = _elite(tmp_path, [], **{key: None})
    assert main(["replay", str(elite)]) == 2
    error = capsys.readouterr().err.strip()
    assert f"no {key!r}" in error and "elite.json" in error and len(error.splitlines()) == 1


def test_a_bug_is_not_reported_as_a_user_error() -> None:
    """Only the user-error classes become one line; a KeyError stays a traceback even when its
    text says "unknown" (an unknown task name is refused by the config, as a ConfigError)."""
    from neuroevo.cli import _is_user_error
    from neuroevo.config import ConfigError

    assert not _is_user_error(KeyError("unknown layer 'embed'"))
    assert _is_user_error(ConfigError("unknown task 'chess'"))


def test_unset_later_keys_leave_the_config_digest_as_before_they_existed(
        tmp_path: Path) -> None:
    """`task.tokenizer` and `model.embedding_init_std` came after runs had been made: unset,
    they are not digested, so a run dir written before them (digest pinned from that code) still
    resumes; set, each changes the digest."""
    dense = load_config("configs/tinystories/dense.yaml")
    assert dense.digest() == "ed6de790b23e4ed0"  # configs/tinystories/dense.yaml before the key
    assert load_config("configs/tinystories/factorized.yaml", "quick").digest() == "2d4bfa0730b78cbe"
    with_file = load_config("configs/tinystories/dense.yaml",
                            overrides=[f"task.tokenizer={tmp_path / 'bpe.json'}"])
    assert with_file.digest() != dense.digest()
    rescaled = load_config("configs/tinystories/dense.yaml",
                           overrides=["model.embedding_init_std=0.044"])
    assert rescaled.digest() != dense.digest()
