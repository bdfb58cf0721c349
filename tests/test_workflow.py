"""The Snakemake workflow: its DAG is exactly the configured grid, config errors name the bad key,
the SLURM profile asks for GPUs, and (slow) a tiny grid runs end to end with the real engine.

Dry runs happen in a temporary working directory holding a copy of configs/ (experiments.yaml
and the engine configs, which the DAG build loads through the engine) and empty stand-ins for
the data files it names; the end-to-end test uses the real configs and engine.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = yaml.safe_load((REPO / "configs" / "experiments.yaml").read_text())
ALL_FAMILIES = ["tinystories", "atari", "car_racing", "mujoco"]


def snakemake(workdir: Path, *args: str, check: bool = True,
              pythonpath: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run the repository's Snakefile in `workdir` (`pythonpath` before the engine's source);
    stdout and stderr come back merged."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--cores", "2", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [*pythonpath, REPO / "src"]))}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    output = result.stdout + result.stderr
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{output[-3000:]}")
    return subprocess.CompletedProcess(command, result.returncode, output, "")


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a snakemake run or dry run, rule → count."""
    table = output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


def evolve_outputs(output: str) -> set[str]:
    """The summary.json every evolve job of a dry run would write."""
    return set(re.findall(r"rule evolve:\n(?:.*\n)*?\s+output: ([^\s,]+)", output))


def expected_runs(preset: str, families: list[str]) -> set[str]:
    """The grid computed straight from experiments.yaml, independently of the workflow's code."""
    entry = EXPERIMENTS["presets"][preset]
    return {
        f"results/{preset}/runs/{task}/{variant}/seed{seed}/summary.json"
        for task, run in entry["runs"].items()
        if EXPERIMENTS["tasks"][task]["family"] in families
        for variant in run["variants"]
        for seed in range(run.get("seeds", entry["seeds"]))
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory with a copy of configs/ and stand-ins for every data file it references."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    data = [d for p in EXPERIMENTS["presets"].values() for r in p["runs"].values() for d in r.get("data", [])]
    for path in data:
        if path != "data/tinystories/first10k.txt":  # made by the fetch rule
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text("{}\n")
    return tmp_path


def edit_experiments(workdir: Path, edit) -> None:
    """Apply `edit` to the working directory's experiments.yaml, as parsed YAML."""
    path = workdir / "configs" / "experiments.yaml"
    experiments = yaml.safe_load(path.read_text())
    edit(experiments)
    path.write_text(yaml.safe_dump(experiments, sort_keys=False))


def add_quick_stories_variant(workdir: Path, name: str, entry: dict) -> None:
    """Define a TinyStories variant in experiments.yaml and run it in the quick preset."""
    def add(experiments: dict) -> None:
        experiments["tasks"]["tinystories"]["variants"][name] = entry
        experiments["presets"]["quick"]["runs"]["tinystories"]["variants"].append(name)

    edit_experiments(workdir, add)


def families_arg(families: list[str]) -> str:
    return "families=[" + ",".join(repr(f) for f in families) + "]"


@pytest.mark.parametrize("preset", ["paper", "quick"])
@pytest.mark.parametrize("families", [["tinystories"], ALL_FAMILIES], ids=["tinystories-only", "all-families"])
def test_dry_run_enumerates_exactly_the_grid(workdir: Path, preset: str, families: list[str]) -> None:
    """The evolve jobs of a dry run are exactly preset × enabled tasks × variants × seeds."""
    output = snakemake(workdir, "-n", "--config", f"preset={preset}", families_arg(families)).stdout
    expected = expected_runs(preset, families)
    assert evolve_outputs(output) == expected
    assert job_counts(output)["evolve"] == len(expected)
    assert ("fetch_tinystories" in job_counts(output)) == (preset == "paper")


@pytest.mark.parametrize("importable", [True, False], ids=["engine-here", "engine-in-jobs-only"])
@pytest.mark.parametrize("where", ["variant set", "engine preset"])
def test_a_tokenizer_file_is_an_input_fetched_when_it_is_the_papers(
        workdir: Path, where: str, importable: bool) -> None:
    """A language variant whose engine config sets `task.tokenizer` (by its `set:` in
    experiments.yaml, or in its YAML: here the `quick` engine preset of factorized.yaml) lists
    that file as the input of its runs and beyond jobs, also where the engine does not import
    (the jobs' conda envs have it): the authors' file is fetched by its own rule, once;
    variants without the key list none."""
    tokenizer = "data/tinystories/tokenizer-bpe.json"
    if where == "variant set":
        def use_papers_tokenizer(experiments: dict) -> None:
            variant = experiments["tasks"]["tinystories"]["variants"]["factorized-r4"]
            variant.setdefault("set", {})["task.tokenizer"] = tokenizer

        edit_experiments(workdir, use_papers_tokenizer)
        expected = {"factorized-r4"}
    else:
        with (workdir / "configs/tinystories/factorized.yaml").open("a") as config:
            config.write(f"presets:\n  quick:\n    task.tokenizer: {tokenizer}\n")
        variants = EXPERIMENTS["tasks"]["tinystories"]["variants"]
        expected = {name for name in EXPERIMENTS["presets"]["quick"]["runs"]["tinystories"]["variants"]
                    if variants[name]["config"] == "configs/tinystories/factorized.yaml"}
    fake = workdir / "no_engine"  # a neuroevo that does not import, ahead of the real one
    (fake / "neuroevo").mkdir(parents=True)
    (fake / "neuroevo" / "__init__.py").write_text("raise ImportError('only in the jobs')\n")
    output = snakemake(workdir, "-n", "--config", "preset=quick", families_arg(["tinystories"]),
                       pythonpath=() if importable else (fake,)).stdout
    assert ("neuroevo does not import here" in output) != importable
    assert job_counts(output)["fetch_paper_tokenizer"] == 1
    readers = re.findall(r"rule (\w+):\n    input: ([^\n]*tokenizer-bpe\.json[^\n]*)\n(?:.*\n)*?"
                         r"\s+wildcards: [^\n]*variant=([\w-]+)", output)
    assert {variant for _, _, variant in readers} == expected
    assert {rule for rule, _, _ in readers} >= {"evolve"}


def test_the_stories_fetch_declares_no_source_record(workdir: Path) -> None:
    """SOURCE.json holds the records of every fetched file (the stories, the paper's tokenizer):
    it is no declared output of fetch_tinystories, which Snakemake would delete before the job."""
    output = snakemake(workdir, "-n", "--config", "preset=paper", families_arg(["tinystories"])).stdout
    fetch = re.search(r"rule fetch_tinystories:\n    output: ([^\n]*)\n", output)
    assert fetch and fetch[1] == "data/tinystories/first10k.txt"


def test_grid_sizes_are_the_documented_ones(workdir: Path) -> None:
    """Paper: 12 TinyStories variants (the paper's 4, ranks 2–32, 4 sparse) × 5 seeds; with every
    family, + 4 games, CarRacing × 15 seeds, 2 MuJoCo envs. Quick: 6 TinyStories variants × 2 seeds,
    Frostbite and CarRacing × 1 seed, HalfCheetah × 2 seeds."""
    assert len(expected_runs("paper", ["tinystories"])) == 60
    assert len(expected_runs("paper", ALL_FAMILIES)) == 60 + 4 * 3 * 5 + 3 * 15 + 2 * 3 * 5
    assert len(expected_runs("quick", ["tinystories"])) == 6 * 2
    assert len(expected_runs("quick", ALL_FAMILIES)) == 12 + 3 * 1 + 3 * 1 + 3 * 2


def expected_beyond(preset: str, item: str, families: list[str]) -> set[str]:
    """The engine outputs of one beyond item, computed straight from experiments.yaml."""
    entry = EXPERIMENTS["presets"][preset]
    spec = entry["beyond"][item]
    name = {"mutation_effects": "mutation_effects.csv", "gradient": "gradient.csv"}[item]
    return {
        f"results/{preset}/beyond/{item}/{task}/{variant}/seed{seed}/{name}"
        for task, run in spec["runs"].items()
        if EXPERIMENTS["tasks"][task]["family"] in families
        for variant in run["variants"]
        for seed in range(spec.get("seeds", entry["runs"][task].get("seeds", entry["seeds"])))
    }


@pytest.mark.parametrize("preset", ["paper", "quick"])
@pytest.mark.parametrize("families", [["tinystories"], ALL_FAMILIES], ids=["tinystories-only", "all-families"])
def test_beyond_jobs_are_exactly_the_beyond_grid(workdir: Path, preset: str, families: list[str]) -> None:
    """`snakemake beyond` schedules the probe and gradient runs of the preset's `beyond` entry
    (enabled families only) and one analysis per item and task."""
    output = snakemake(workdir, "-n", "beyond", "--config", f"preset={preset}", families_arg(families)).stdout
    counts = job_counts(output)
    for item in ("mutation_effects", "gradient"):
        outputs = set(re.findall(rf"rule {item}:\n(?:.*\n)*?\s+output: ([^\s,]+)", output))
        assert outputs == expected_beyond(preset, item, families)
    probed = [t for t in EXPERIMENTS["presets"][preset]["beyond"]["mutation_effects"]["runs"]
              if EXPERIMENTS["tasks"][t]["family"] in families]
    assert counts["beyond_mutation_effects"] == len(probed)
    assert counts["beyond_gradient"] == counts["beyond_rank_study"] == counts["beyond_sparse"] == 1


def test_beyond_variant_the_preset_does_not_run_fails_naming_it(workdir: Path) -> None:
    """A beyond item that probes a variant outside the preset's runs fails at DAG build, naming both."""
    edit_experiments(workdir, lambda e: e["presets"]["quick"]["beyond"]["mutation_effects"]["runs"]["tinystories"]
                     ["variants"].append("factorized-r64"))
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0
    assert ("presets.quick.beyond.mutation_effects.runs.tinystories has variant 'factorized-r64', which "
            "presets.quick.runs.tinystories does not run") in result.stdout


def test_evolve_command_carries_preset_seed_and_overrides(workdir: Path) -> None:
    """A rank-sweep run passes its rank overrides, one `--set` each, after the seed, and always
    --resume --restart-changed (a retry continues; a run an edit made stale starts again)."""
    output = snakemake(workdir, "-n", "-p", "results/paper/runs/tinystories/factorized-r2/seed3/summary.json").stdout
    assert ("neuroevo run configs/tinystories/factorized.yaml --out results/paper/runs/tinystories/factorized-r2/seed3"
            " --device auto --set seed=3 --set task.text=data/tinystories/first10k.txt"
            " --set encoding.rank=2 --set encoding.ranks.embedding=16 --workers 2"
            " --resume --restart-changed") in output
    quick = snakemake(workdir, "-n", "-p", "results/quick/runs/tinystories/dense/seed1/summary.json").stdout
    assert ("--preset quick --device cpu --set seed=1 --set task.text=data/quickstories.txt"
            " --workers 1 --resume --restart-changed") in quick


def test_environment_pools_get_the_threads_the_job_gets(workdir: Path) -> None:
    """An RL run's environment pool is sized to the job's threads, which --cores may cap below the
    preset's (32 for CarRacing): a pool of the preset's size would oversubscribe the cores. A job
    that asks for no GPU (MuJoCo's) runs on the CPU even where `device: auto` would find one."""
    output = snakemake(workdir, "-n", "-p", "--cores", "4",
                       "results/paper/runs/car_racing/dense/seed0/summary.json",
                       "results/paper/runs/hopper/dense/seed0/summary.json").stdout
    assert "car_racing/dense/seed0 --device auto --set seed=0 --workers 4 --resume" in output
    assert "hopper/dense/seed0 --device cpu --set seed=0 --workers 4 --resume" in output


def _run_with_a_stand_in_engine(workdir: Path, target: str) -> None:
    """Make `target` with a stand-in engine on PATH that writes the summary the rule declares,
    so the job really runs and Snakemake records its metadata (params, inputs)."""
    fake = workdir / "bin" / "neuroevo"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "--out" ]; do shift; done\n'
                    'mkdir -p "$2" && echo "{}" > "$2/summary.json"\n')
    fake.chmod(0o755)
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--cores", "1", target]
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    subprocess.run(command, check=True, capture_output=True, env=env)


def test_an_edited_variant_override_reruns_its_runs(workdir: Path) -> None:
    """Snakemake records each run's arguments (a function of the wildcards alone, the pool size
    apart), so editing a variant's `set:` in experiments.yaml reruns the runs it changes."""
    target = "results/quick/runs/tinystories/factorized-r16/seed0/summary.json"
    _run_with_a_stand_in_engine(workdir, target)
    assert "Nothing to be done" in snakemake(workdir, "-n", target).stdout
    experiments = workdir / "configs" / "experiments.yaml"
    experiments.write_text(experiments.read_text().replace(
        "set: {encoding.rank: 16, encoding.ranks.embedding: 32}",
        "set: {encoding.rank: 16, encoding.ranks.embedding: 16}"))
    assert "Params have changed" in snakemake(workdir, "-n", target).stdout


def test_a_config_edit_reruns_runs_only_when_it_changes_a_setting(workdir: Path) -> None:
    """Editing an engine config (here the base every TinyStories config extends) reruns its runs
    when the edit changes what the YAML says for them, and not for a comment or another engine
    preset: the files are `ancient` inputs and their parsed content a param."""
    target = "results/quick/runs/tinystories/factorized-r16/seed0/summary.json"
    _run_with_a_stand_in_engine(workdir, target)
    base = workdir / "configs" / "tinystories" / "_base.yaml"
    base.write_text(base.read_text() + "# a comment added later\n")
    os.utime(base)  # newer than the run's summary either way
    assert "Nothing to be done" in snakemake(workdir, "-n", target).stdout
    base.write_text(base.read_text().replace("presets:\n", "presets:\n  other: {ga.elites: 2}\n"))
    assert "Nothing to be done" in snakemake(workdir, "-n", target).stdout  # not its preset
    base.write_text(base.read_text().replace("  elites: 16", "  elites: 8"))
    assert "Params have changed" in snakemake(workdir, "-n", target).stdout


def test_a_retry_keeps_only_the_last_attempts_log(workdir: Path) -> None:
    """Snakemake deletes an evolve job's log before each retry, so the log holds the last
    attempt; --show-failed-logs (both profiles set it) prints each failed attempt's log, as the
    comment on evolve's shell says."""
    target = "results/quick/runs/tinystories/dense/seed0/summary.json"
    fake = workdir / "bin" / "neuroevo"  # fails twice, naming its attempt, then writes the summary
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nn=$(($(cat attempts 2>/dev/null || echo 0) + 1)); echo $n > attempts\n'
                    'echo "traceback of attempt $n"; [ $n -ge 3 ] || exit 1\n'
                    'while [ "$1" != "--out" ]; do shift; done\nmkdir -p "$2" && echo "{}" > "$2/summary.json"\n')
    fake.chmod(0o755)
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--cores", "1", "--show-failed-logs", target]
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "traceback of attempt 1" in output and "traceback of attempt 2" in output
    log = (workdir / "logs/quick/evolve/tinystories/dense/seed0.log").read_text()
    assert "traceback of attempt 3" in log and "attempt 1" not in log and log.count("== ") == 1


def test_single_figure_target_needs_only_its_table(workdir: Path) -> None:
    """Asking for one figure schedules the runs, the aggregation and that figure: no tables, no
    report. The aggregate reads the whole preset (24 runs, Atari and CarRacing included) unless
    `families` limits it, as workflow/README.md shows (TinyStories' 12)."""
    output = snakemake(workdir, "-n", "figures/quick/tinystories_fitness.pdf").stdout
    assert job_counts(output) == {"evolve": 24, "grid": 1, "aggregate": 1, "figure_fitness": 1}
    limited = snakemake(workdir, "-n", "figures/quick/tinystories_fitness.pdf", "--config", "families=[tinystories]").stdout
    assert job_counts(limited) == {"evolve": 12, "grid": 1, "aggregate": 1, "figure_fitness": 1}


@pytest.mark.parametrize("target, message", [
    ("figures/quick/hopper_fitness.pdf", "task 'hopper' is not in preset 'quick'"),
    ("figures/paper/car_racing_rank.pdf", "'car_racing' has fewer than two factorized ranks"),
    ("figures/paper/frostbite_stages.pdf", "'frostbite' is not a two-wave (CarRacing) task"),
])
def test_a_figure_outside_the_presets_grid_fails_before_any_run(workdir: Path, target: str,
                                                                message: str) -> None:
    """A figure the preset does not make stops the DAG build with one line, instead of
    scheduling the runs it would need and failing after them."""
    result = snakemake(workdir, "-n", target, check=False)
    assert result.returncode != 0 and message in result.stdout
    assert "evolve" not in result.stdout


def schema_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one-line schema error of a failed dry run, after checking it is one line: not
    Snakemake's own dump of the whole schema and config."""
    assert result.returncode != 0
    assert "Failed validating" not in result.stdout and len(result.stdout.splitlines()) < 10, result.stdout
    return next(line for line in result.stdout.splitlines() if line.startswith("experiments config at "))


def test_unknown_config_key_fails_naming_it(workdir: Path) -> None:
    """`--config seeds=3` (a preset's key, not a top-level one) fails schema validation in one
    line naming 'seeds', where it is, and the schema that lists the keys."""
    result = snakemake(workdir, "-n", "--config", "preset=quick", "seeds=3", check=False)
    assert schema_error(result) == (
        "experiments config at the top level: Additional properties are not allowed ('seeds' was "
        "unexpected); every key is described in workflow/schemas/experiments.schema.yaml")


def test_bad_nested_key_in_a_configfile_fails_naming_it(workdir: Path) -> None:
    """A typo deep in an experiments file given with --configfile is rejected, naming the key and
    the entry that holds it."""
    bad = yaml.safe_load((workdir / "configs" / "experiments.yaml").read_text())
    bad["presets"]["quick"]["runs"]["tinystories"]["seedz"] = 3
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = snakemake(workdir, "-n", "--configfile", str(path), "--replace-workflow-config", check=False)
    assert schema_error(result).startswith("experiments config at presets.quick.runs.tinystories: "
                                           "Additional properties are not allowed ('seedz' was unexpected)")


def test_misspelt_task_key_fails_naming_the_task(workdir: Path) -> None:
    """A misspelt key in a task's entry (`treatmnt:`) fails in one line naming the task."""
    edit_experiments(workdir, lambda e: e["tasks"]["hopper"].update(treatmnt=e["tasks"]["hopper"].pop("treatment")))
    assert schema_error(snakemake(workdir, "-n", check=False)).startswith(
        "experiments config at tasks.hopper: Additional properties are not allowed ('treatmnt' was unexpected)")


def test_unknown_variant_in_a_preset_fails_naming_it(workdir: Path) -> None:
    """A preset that runs a variant the task does not define fails at DAG build, naming both."""
    edit_experiments(workdir, lambda e: e["presets"]["quick"]["runs"]["tinystories"]["variants"].append("factorized-r3"))
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0
    assert "presets.quick.runs.tinystories has unknown variant 'factorized-r3'" in result.stdout


def test_missing_engine_config_fails_at_dag_build_naming_the_file(workdir: Path) -> None:
    """A typo'd engine config path fails the dry run with one line naming that file and the
    experiments.yaml entry to fix (taking the family out is only the alternative)."""
    edit_experiments(workdir, lambda e: e["tasks"]["halfcheetah"]["variants"]["small"].update(
        config="configs/mujoco/halfcheetah/smal.yaml"))
    result = snakemake(workdir, "-n", "--config", "preset=quick", check=False)
    assert result.returncode != 0
    assert ("engine config configs/mujoco/halfcheetah/smal.yaml (task halfcheetah, variant small) does "
            "not exist: fix tasks.halfcheetah.variants.small.config in configs/experiments.yaml (or, if "
            "the family's configs have not landed yet, leave 'mujoco' out of `families`)") in result.stdout


def _replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("variant, edit, engine_message", [
    ("halfcheetah/small", lambda w: _replace_in(w / "configs/mujoco/halfcheetah/small.yaml", "env_id:", "env_idd:"),
     "unknown key task.env_idd"),
    ("halfcheetah/small", lambda w: _replace_in(w / "configs/mujoco/halfcheetah/small.yaml", "HalfCheetah-v5",
                                                "Walker3d-v5"),
     "unknown MuJoCo env 'Walker3d-v5' in task.env_id"),
    ("frostbite/dense", lambda w: _replace_in(w / "configs/atari/frostbite/dense.yaml", "game: Frostbite",
                                              "game: Frostbyte"),
     "unknown Atari game 'Frostbyte' in task.game"),
    ("tinystories/factorized-r16", lambda w: edit_experiments(w, lambda e: e["tasks"]["tinystories"]["variants"]
                                                              ["factorized-r16"]["set"].update({"ga.populaton": 8})),
     "unknown key ga.populaton"),
], ids=["bad-key", "bad-env-id", "bad-game", "bad-variant-set"])
def test_an_engine_config_that_does_not_load_fails_at_dag_build(workdir: Path, variant: str, edit,
                                                                 engine_message: str) -> None:
    """An engine config the engine would refuse, with the options its evolve jobs pass (the
    preset's engine preset, the variant's `set:`), fails the dry run in one line naming preset,
    task, variant and file, with the engine's own message: not each job, in its log, after two
    retries."""
    task, name = variant.split("/")
    edit(workdir)
    result = snakemake(workdir, "-n", "--config", "preset=quick", check=False)
    assert result.returncode != 0 and "rule evolve" not in result.stdout
    path = EXPERIMENTS["tasks"][task]["variants"][name]["config"]
    line = next(line for line in result.stdout.splitlines() if line.startswith("engine config "))
    assert line.startswith(f"engine config {path} (preset 'quick', task {task}, variant {name}) does not load: ")
    assert engine_message in line


def test_a_variant_labelled_with_another_rank_than_it_searches_fails_at_dag_build(
        workdir: Path) -> None:
    """A variant's `rank` labels it (tables, the rank figure); a new rank-sweep variant that
    names rank 6 but leaves the config's rank 4 would run rank 4 plotted as 6: the dry run
    refuses it in one line naming the variant and the fix."""
    add_quick_stories_variant(workdir, "factorized-r6",
                              {"config": "configs/tinystories/factorized.yaml", "rank": 6})
    result = snakemake(workdir, "-n", "--config", "preset=quick", check=False)
    assert result.returncode != 0 and "rule evolve" not in result.stdout
    assert ("configs/experiments.yaml: tasks.tinystories.variants.factorized-r6 is labelled rank 6 "
            "but its runs search rank 4 (configs/tinystories/factorized.yaml): add "
            "`set: {encoding.rank: 6}` to the variant, or correct its `rank`") in result.stdout
    edit_experiments(workdir, lambda e: e["tasks"]["tinystories"]["variants"]["factorized-r6"].update(
        set={"encoding.rank": 6}))
    assert snakemake(workdir, "-n", "--config", "preset=quick").returncode == 0


def test_a_ranked_variant_that_is_not_factorized_needs_a_label(workdir: Path) -> None:
    """Without a `label:` the legends call a variant with a rank "Low-Rank Factorization (Rank
    r)": a sparse variant of rank 4's size would be drawn as a factorization. The dry run
    refuses it in one line."""
    add_quick_stories_variant(workdir, "sparse-unlabelled",
                              {"config": "configs/tinystories/sparse.yaml", "rank": 4})
    result = snakemake(workdir, "-n", "--config", "preset=quick", check=False)
    assert result.returncode != 0 and "rule evolve" not in result.stdout
    assert ("configs/experiments.yaml: tasks.tinystories.variants.sparse-unlabelled has rank 4 but "
            "a sparse encoding: give it a `label:` for the legends and tables") in result.stdout


def test_a_presets_own_compare_and_figure_variants_reach_the_grid(workdir: Path) -> None:
    """A preset's `compare` and `figure_variants` (layers_cpu: its ablations tested and drawn
    beside dense) replace the task's in grid.json; one naming a variant the preset does not run
    is refused at DAG build, in one line."""
    snakemake(workdir, "--config", "preset=layers_cpu", "--", "results/layers_cpu/grid.json")
    task = json.loads((workdir / "results/layers_cpu/grid.json").read_text())["tasks"]["tinystories"]
    ablation = ["dense", "factorized-r4", "factorized-blocks-r4", "factorized-embedding-r4"]
    assert task["compare"] == task["figure_variants"] == ablation
    assert task["variants"]["factorized-blocks-r4"]["set"] == {"encoding.ranks.embedding": None}

    def compare_small(experiments: dict) -> None:
        experiments["presets"]["layers_cpu"]["runs"]["tinystories"]["compare"].append("small")

    edit_experiments(workdir, compare_small)
    result = snakemake(workdir, "-n", "--config", "preset=layers_cpu", check=False)
    assert result.returncode != 0 and "rule evolve" not in result.stdout
    assert ("presets.layers_cpu.runs.tinystories.compare names 'small', which the preset does "
            "not run") in result.stdout


def test_without_the_rl_extra_here_rl_configs_are_left_to_their_jobs(workdir: Path) -> None:
    """Where Snakemake's Python lacks the RL extra (it is in the jobs' conda env, envs/rl.yaml),
    the DAG still builds: the engine configs of the families whose checks need it are left to
    their jobs, with a warning each, and the rest (CarRacing's too) are still loaded."""
    site = workdir / "site"  # a Python without gymnasium and ale_py
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules.update(gymnasium=None, ale_py=None)\n")
    output = snakemake(workdir, "-n", "--config", "preset=quick", pythonpath=(site,)).stdout
    assert job_counts(output)["evolve"] == 24
    for family in ("atari", "mujoco"):  # their sections check ids against ale_py's ROMs, gymnasium's registry
        assert f"engine configs of family {family!r} are checked by their jobs: task {family!r} needs" in output
    assert "family 'tinystories'" not in output and "family 'car_racing'" not in output
    _replace_in(workdir / "configs/tinystories/small.yaml", "hidden: 4", "hiddn: 4")
    result = snakemake(workdir, "-n", "--config", "preset=quick", check=False, pythonpath=(site,))
    assert result.returncode != 0 and "unknown key model.hiddn" in result.stdout


def test_slurm_profile_submits_evolve_jobs_with_a_gpu(workdir: Path) -> None:
    """With profiles/slurm the paper's engine jobs (evolve, and the probe and gradient runs beyond
    the paper) ask SLURM for one GPU, their memory and time."""
    output = snakemake(workdir, "-n", "--workflow-profile", str(REPO / "profiles" / "slurm"),
                       "--config", families_arg(["tinystories"])).stdout
    blocks = re.findall(r"rule (?:evolve|mutation_effects|gradient):\n(?:.*\n)*?\s+resources: (.*)", output)
    beyond = sum(len(expected_beyond("paper", item, ["tinystories"])) for item in ("mutation_effects", "gradient"))
    assert len(blocks) == 60 + beyond
    for resources in blocks:
        assert "gpu=1" in resources and "mem_mb=32000" in resources and "runtime=1440" in resources
        assert "slurm_partition=" in resources and "slurm_account=" in resources


# --- end to end (needs the engine) -----------------------------------------------------------

TINY = {  # a seconds-long TinyStories run: the shipped corpus, 8 individuals, 3 generations
    "ga.generations": 3, "ga.population": 8, "ga.elites": 2, "task.n_sequences": 8, "task.max_len": 24,
    "model.n_blocks": 1,
}


def tiny_experiments(cache: Path) -> dict:
    """2 variants (two ranks, so every figure applies) × 2 seeds of the quick preset, tiny runs,
    and tiny beyond-the-paper analyses."""
    overrides = {**TINY, "task.cache_dir": str(cache)}
    return {
        "preset": "quick",
        "families": ["tinystories"],
        "tasks": {"tinystories": {
            "family": "tinystories", "title": "TinyStories", "series": "best",
            "ylabel": "Negative Cross-Entropy Loss", "compare": ["factorized-r4", "factorized-r2"],
            "treatment": "factorized-r2",
            "neutral_tolerance": 1.0e-3,
            "test_generations": [2],
            "variants": {
                "factorized-r4": {"config": "configs/tinystories/factorized.yaml", "rank": 4, "set": overrides},
                "factorized-r2": {"config": "configs/tinystories/factorized.yaml", "rank": 2,
                                  "set": {**overrides, "encoding.rank": 2, "encoding.ranks.embedding": 16}},
            },
        }},
        "presets": {"quick": {
            "engine_preset": "quick", "device": "cpu", "seeds": 2,
            "resources": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0},
            "runs": {"tinystories": {"variants": ["factorized-r4", "factorized-r2"],
                                     "data": ["data/quickstories.txt"]}},
            "beyond": {  # every item but `sparse`, whose variants the unit tests cover
                "mutation_effects": {"seeds": 1, "runs": {"tinystories": {
                    "variants": ["factorized-r2"], "generations": [1, 3], "parents": 2, "mutations": 3}}},
                "gradient": {"seeds": 1, "runs": {"tinystories": {"variants": ["factorized-r4"]}}},
                "rank_study": ["tinystories"],
            },
        }},
    }


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("neuroevo.cli") is None, reason="the engine (neuroevo.cli) has not landed")
def test_tiny_grid_end_to_end_then_nothing_to_do_then_one_figure(tmp_path: Path) -> None:
    """A tiny grid runs through evolve → tables → figures → beyond the paper → report; a rerun does
    nothing; a deleted figure is rebuilt alone, byte for byte, so the report that embeds it stays
    up to date (Snakemake sees the input's checksum unchanged)."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tinystories").symlink_to(REPO / "configs" / "tinystories")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "quickstories.txt").symlink_to(REPO / "data" / "quickstories.txt")
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(yaml.safe_dump(tiny_experiments(tmp_path / "cache")))

    run = snakemake(tmp_path, "--configfile", str(experiments)).stdout
    assert job_counts(run)["evolve"] == 4
    for name in ("final", "kruskal", "pairwise"):
        assert all((tmp_path / f"results/quick/tables/{name}.{ext}").stat().st_size > 0 for ext in ("csv", "md", "tex"))
    with open(tmp_path / "results/quick/tables/milestones.csv", newline="") as f:
        milestones = list(csv.DictReader(f))
    assert [(r["generation"], r["a"], r["b"]) for r in milestones] == [("2", "factorized-r2", "factorized-r4")]
    for name in ("fitness", "final", "runtime", "rank", "searched"):
        assert all((tmp_path / f"figures/quick/tinystories_{name}.{ext}").stat().st_size > 0 for ext in ("pdf", "png"))
    for name in ("mutation_effects", "gradient", "rank_study"):
        assert (tmp_path / f"results/quick/tables/beyond/tinystories_{name}.md").stat().st_size > 0
        assert (tmp_path / f"figures/quick/beyond/tinystories_{name}.png").stat().st_size > 0
    html = (tmp_path / "paper/quick/report.html").read_text()
    assert "data:image/png;base64," in html and "Paper vs this reproduction" in html
    assert "Beyond the paper" in html and "Rank and search-space study" in html
    assert "### milestones" in (tmp_path / "paper/quick/report.md").read_text()

    assert "Nothing to be done" in snakemake(tmp_path, "--configfile", str(experiments)).stdout

    figure = tmp_path / "figures/quick/tinystories_final.pdf"
    before = figure.read_bytes()
    figure.unlink()
    alone = snakemake(tmp_path, "figures/quick/tinystories_final.pdf", "--configfile", str(experiments)).stdout
    assert job_counts(alone) == {"figure_final": 1}
    assert figure.read_bytes() == before  # figures are deterministic, so
    assert "Nothing to be done" in snakemake(tmp_path, "--configfile", str(experiments)).stdout


def test_every_searched_rank_is_stated_and_is_the_engine_configs() -> None:
    """A factorized or sparse variant in experiments.yaml names its rank (the tables' rank
    column and the rank figure read it), and that rank is the one its engine config, with the
    variant's overrides, actually searches."""
    from neuroevo.config import load_config

    experiments = yaml.safe_load((REPO / "configs" / "experiments.yaml").read_text())
    checked = 0
    for task, spec in experiments["tasks"].items():
        for name, variant in spec["variants"].items():
            overrides = [f"{k}={json.dumps(v)}" for k, v in (variant.get("set") or {}).items()]
            encoding = load_config(REPO / variant["config"], overrides=overrides).encoding
            if encoding.kind == "dense":
                continue
            assert variant.get("rank") == encoding.rank, f"{task}/{name}"
            checked += 1
    assert checked >= 10


def test_the_workflow_lists_the_analysis_tables_and_figures() -> None:
    """common.smk names the tables and figures as literals (Snakemake's own environment need not
    have neuroevo installed): they must stay the analysis package's, or a new figure would never
    be drawn by `snakemake` and a removed one would fail the DAG."""
    import ast

    from neuroevo.analysis import figures, tables

    source = (REPO / "workflow" / "rules" / "common.smk").read_text()
    listed = {}
    for name in ("TABLES", "FIGURE_TABLE"):
        match = re.search(rf"^{name} = (\[.*?\]|\{{.*?\}})$", source, re.MULTILINE | re.DOTALL)
        assert match, f"{name} not found in common.smk"
        listed[name] = ast.literal_eval(match.group(1))
    assert tuple(listed["TABLES"]) == tables.TABLES
    table_file = {"long": "fitness_long", "runs": "runs"}
    assert listed["FIGURE_TABLE"] == {name: table_file[table]
                                      for name, (_, table) in figures.FIGURES.items()}


@pytest.mark.parametrize("metadata", [True, False], ids=["with-metadata", "fresh-clone"])
def test_a_label_edit_redraws_without_rerunning_evolution(workdir: Path, metadata: bool) -> None:
    """A preset whose run directories are gone (the committed ones: runs are not in git) keeps
    its tables: editing a task's axis label reruns the grid, the tables and the figure, never
    `aggregate` (which would need every run) or `evolve` — also in a fresh clone, where
    Snakemake has no record of the grid's params to compare with."""
    snakemake(workdir, "--config", "preset=quick", "--", "results/quick/grid.json")
    if not metadata:
        shutil.rmtree(workdir / ".snakemake")
    _tabled_runs(workdir, "quick")  # stand-ins listing every run, newer than the grid
    edit_experiments(workdir, _edit_the_stories_label)
    output = snakemake(workdir, "-n", "figures/quick/tinystories_fitness.pdf").stdout
    counts = job_counts(output)
    assert counts.get("grid") == 1 and counts.get("figure_fitness") == 1
    assert "aggregate" not in counts and "evolve" not in counts
    tables_output = snakemake(workdir, "-n", "results/quick/tables/final.md").stdout
    assert job_counts(tables_output).get("tables") == 1  # the grid's edit reaches the tables too


@pytest.mark.parametrize("metadata", [True, False], ids=["with-metadata", "fresh-clone"])
def test_a_config_edit_that_leaves_the_grid_as_it_is_redraws_nothing(workdir: Path, metadata: bool) -> None:
    """Editing configs/ elsewhere (here: a comment; also another preset, a resource) leaves a
    preset's grid.json as it is: nothing reruns, so a committed preset's figures are not redrawn."""
    snakemake(workdir, "--config", "preset=quick", "--", "results/quick/grid.json")
    if not metadata:
        shutil.rmtree(workdir / ".snakemake")
    experiments = workdir / "configs" / "experiments.yaml"
    experiments.write_text(experiments.read_text() + "# an edit that changes no grid\n")
    output = snakemake(workdir, "-n", "results/quick/grid.json").stdout
    assert "Nothing to be done" in output


def test_every_committed_grid_is_the_one_its_configs_give(workdir: Path) -> None:
    """The committed presets' grid.json files against configs/ as they are now: a config edit
    that changed a committed preset's grid would redraw its tables and figures from a fresh
    clone (or fail there, the run directories not being in git) without a new run behind them.
    The grids are made older than the configs, as a fresh clone may leave them (a year old:
    Snakemake takes a zero mtime for none)."""
    committed = sorted(REPO.glob("results/*/grid.json"))
    assert committed, "no committed preset found"
    targets = []
    for grid in committed:
        target = workdir / grid.relative_to(REPO)
        target.parent.mkdir(parents=True)
        shutil.copyfile(grid, target)
        year_ago = time.time() - 365 * 86400
        os.utime(target, (year_ago, year_ago))
        targets.append(str(grid.relative_to(REPO)))
    output = snakemake(workdir, "-n", *targets).stdout
    assert "Nothing to be done" in output, \
        "a config edit changed these committed grids (run the preset, or revert):\n" + output[-3000:]


def _edit_the_stories_label(experiments: dict) -> None:
    """A display edit that reaches the quick preset's grid (for `edit_experiments`): the
    TinyStories task's axis label (not its title, which quick replaces with its own)."""
    experiments["tasks"]["tinystories"]["ylabel"] += " (edited)"


def _tabled_runs(workdir: Path, preset: str, leave_out: int = 0) -> None:
    """A stand-in runs.csv listing the preset's runs (all but the last `leave_out`), newer than
    the grid file, as a committed preset has it in a fresh clone: no run directories."""
    rows = sorted(expected_runs(preset, ALL_FAMILIES))
    tables = workdir / "results" / preset / "tables"
    tables.mkdir(parents=True)
    lines = ["task,variant,seed"] + [",".join(re.fullmatch(rf"results/{preset}/runs/(.+)/(.+)/seed(\d+)/summary.json",
                                                          row).groups()) for row in rows[:len(rows) - leave_out]]
    for name in ("runs.csv", "fitness_long.csv"):
        (tables / name).write_text("\n".join(lines) + "\n")


def test_a_tabled_preset_without_run_directories_reruns_nothing(workdir: Path) -> None:
    _tabled_runs(workdir, "quick")
    output = snakemake(workdir, "-n", "results/quick/tables/runs.csv").stdout
    assert "Nothing to be done" in output


@pytest.mark.parametrize("committed_grid", [False, True])
def test_runs_added_to_a_tabled_preset_are_run(workdir: Path, committed_grid: bool) -> None:
    """Snakemake does not rebuild a missing input of an up-to-date output: a variant added to a
    committed preset (runs.csv and grid.json in git, run directories and metadata not) must
    still get its runs, and the aggregate all of them (it reads every run)."""
    experiments = workdir / "configs" / "experiments.yaml"
    original = experiments.read_text()
    if committed_grid:  # the grid from before a seed was added
        edit_experiments(workdir, lambda e: e["presets"]["quick"].update(seeds=e["presets"]["quick"]["seeds"] - 1))
        snakemake(workdir, "--config", "preset=quick", "--", "results/quick/grid.json")
        shutil.rmtree(workdir / ".snakemake")
    _tabled_runs(workdir, "quick", leave_out=1)
    experiments.write_text(original)  # the edit that added the run: newer
    output = snakemake(workdir, "-n", "results/quick/tables/runs.csv").stdout
    assert evolve_outputs(output) == expected_runs("quick", ALL_FAMILIES)
    assert job_counts(output).get("aggregate") == 1



def _collected_logs(workdir: Path, preset: str, leave_out: int = 0) -> None:
    """Stand-ins for the committed tables that collect each beyond item's engine logs (all
    runs but the last `leave_out` of each), newer than the grid: a fresh clone's view of a
    committed preset, whose beyond run directories are not in git."""
    beyond = EXPERIMENTS["presets"][preset]["beyond"]
    tables = workdir / "results" / preset / "tables" / "beyond"
    tables.mkdir(parents=True, exist_ok=True)
    for item in ("mutation_effects", "gradient"):
        for task, entry in beyond.get(item, {}).get("runs", {}).items():
            n_seeds = beyond[item].get("seeds", EXPERIMENTS["presets"][preset]["seeds"])
            rows = [f"{task},{variant},{seed}" for variant in entry["variants"] for seed in range(n_seeds)]
            lines = ["task,variant,seed", *rows[:len(rows) - leave_out]]
            (tables / f"{task}_{item}_logs.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("metadata", [True, False], ids=["with-metadata", "fresh-clone"])
def test_a_label_edit_redraws_beyond_analyses_without_their_engine_runs(workdir: Path, metadata: bool) -> None:
    """The gradient and mutation-effect analyses read their committed collected logs: a label
    edit redraws them (and nothing upstream), with no `gradient` or `mutation_effects` job,
    whose directories a committed preset lacks."""
    snakemake(workdir, "--config", "preset=quick", "--", "results/quick/grid.json")
    if not metadata:
        shutil.rmtree(workdir / ".snakemake")
    _tabled_runs(workdir, "quick")
    _collected_logs(workdir, "quick")
    edit_experiments(workdir, _edit_the_stories_label)
    output = snakemake(workdir, "-n", "results/quick/tables/beyond/tinystories_gradient.csv",
                       "results/quick/tables/beyond/tinystories_mutation_effects.csv").stdout
    counts = job_counts(output)
    assert counts.get("beyond_gradient") == 1 and counts.get("beyond_mutation_effects") == 1
    assert not {"gradient", "mutation_effects", "collect_logs", "aggregate", "evolve"} & set(counts)


def test_a_run_added_to_a_collected_beyond_item_runs_and_recollects(workdir: Path) -> None:
    """A committed collected table lacking one of the item's runs (a seed or variant added):
    that item's engine runs are scheduled and the table collected again from all of them."""
    _tabled_runs(workdir, "quick")
    _collected_logs(workdir, "quick", leave_out=1)
    experiments = workdir / "configs" / "experiments.yaml"
    experiments.write_text(experiments.read_text())  # the edit that added the run: newer
    output = snakemake(workdir, "-n", "results/quick/tables/beyond/tinystories_gradient.csv").stdout
    beyond = EXPERIMENTS["presets"]["quick"]["beyond"]["gradient"]
    n_runs = len(beyond["runs"]["tinystories"]["variants"]) * beyond.get("seeds", EXPERIMENTS["presets"]["quick"]["seeds"])
    counts = job_counts(output)
    assert counts.get("gradient") == n_runs and counts.get("collect_logs") == 1


def test_an_analysis_code_edit_redraws_without_rerunning_evolution(workdir: Path) -> None:
    """The analysis code (src/neuroevo/analysis/) is an input of the drawing rules: outputs
    older than it are redrawn, from the committed tables alone (no aggregate, no evolve). Here
    the stand-in outputs are made older than the repository's code instead of editing it."""
    snakemake(workdir, "--config", "preset=quick", "--", "results/quick/grid.json")
    shutil.rmtree(workdir / ".snakemake")
    _tabled_runs(workdir, "quick")
    figures = workdir / "figures" / "quick"
    figures.mkdir(parents=True)
    outputs = [figures / "tinystories_fitness.pdf", figures / "tinystories_fitness.png"]
    for path in outputs:
        path.write_text("stand-in\n")
    tables = workdir / "results" / "quick" / "tables"
    inputs = [workdir / "results" / "quick" / "grid.json", tables / "runs.csv", tables / "fitness_long.csv"]
    configs = [p for p in workdir.rglob("*") if p.is_file() and p not in (*inputs, *outputs)]
    for path, when in [*((p, 500_000) for p in configs), *((p, 1_000_000) for p in inputs),
                       *((p, 2_000_000) for p in outputs)]:
        os.utime(path, (when, when))  # 1970, in the order the workflow wrote them: older than
        # any checkout of the code
    output = snakemake(workdir, "-n", "figures/quick/tinystories_fitness.pdf").stdout
    assert job_counts(output) == {"figure_fitness": 1}
    assert "src/neuroevo/analysis/" in output.split("rule figure_fitness:", 1)[1]
