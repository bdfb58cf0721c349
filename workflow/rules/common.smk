"""The grid: configs/experiments.yaml (already schema-validated) resolved per preset into run
directories, evolve arguments and analysis targets. Every rule takes its preset from the
`{preset}` wildcard, so `figures/quick/...` builds the quick grid whatever `config["preset"]` is.
Cross-references the schema cannot express (variant names, engine config files, which the
engine's own loader reads with each run's options) are checked here, at DAG build, each failing
with one line.
"""

import csv
import functools
import hashlib
import json
import shlex
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

PRESET = config["preset"]
TABLES = ["final", "kruskal", "pairwise", "stages", "milestones"]
# Figure name → the results table it is drawn from (neuroevo.analysis.figures.FIGURES).
FIGURE_TABLE = {
    "fitness": "fitness_long",
    "seeds": "fitness_long",
    "final": "runs",
    "runtime": "fitness_long",
    "rank": "runs",
    "searched": "runs",
    "stages": "runs",
}
RL_FAMILIES = {"atari", "car_racing", "mujoco"}


def preset_config(preset):
    """The `presets.<preset>` entry, or a one-line error listing the known presets."""
    if preset not in config["presets"]:
        raise WorkflowError(
            f"configs/experiments.yaml: unknown preset {preset!r} (known: {', '.join(config['presets'])})"
        )
    return config["presets"][preset]


def runs(preset):
    """Task → run entry of the preset, for tasks of enabled families only, in config order."""
    return {
        task: entry
        for task, entry in preset_config(preset)["runs"].items()
        if config["tasks"][task]["family"] in config["families"]
    }


def seeds(preset, task):
    """Seeds 0..n-1 of one task (CarRacing's paper seeds are 0–14)."""
    return list(range(runs(preset)[task].get("seeds", preset_config(preset)["seeds"])))


def variant_config(task, variant):
    """The task's variant entry: engine config file, `--set` overrides, rank, label."""
    return config["tasks"][task]["variants"][variant]


def run_dirs(preset):
    """Every run directory of the preset's grid."""
    return [f"results/{preset}/runs/{task}/{variant}/seed{seed}" for task, variant, seed in grid_runs(preset)]


def grid_runs(preset):
    """Every (task, variant, seed) of the preset's grid, in config order."""
    return [
        (task, variant, seed)
        for task, entry in runs(preset).items()
        for variant in entry["variants"]
        for seed in seeds(preset, task)
    ]


# The analysis code, an input of every rule that draws from tables (tables, figures, report, the
# beyond analyses; not aggregate or collect_logs, which read engine runs): editing
# src/neuroevo/analysis/ redraws what it draws, in seconds, and never reruns a run.
ANALYSIS_CODE = sorted(str(path) for path in Path(workflow.basedir, "src", "neuroevo", "analysis").glob("*.py"))


def grid_while_tabled(preset, table, columns, wanted):
    """The grid as an input of a rule that reads engine runs into `table` (aggregate,
    collect_logs): `ancient` while the table holds every `wanted` run (tuples of its `columns`,
    as strings), a plain input once the grid has runs it lacks (a variant or seed added).
    Snakemake does not rebuild a missing input of an up-to-date output, so without a newer grid
    those runs would never be scheduled where their directories and Snakemake's metadata are
    absent (a committed preset in a fresh clone). Not `ancient` then, too, because Snakemake 9
    drops a job whose `ancient` input is being rebuilt, whatever else (even --forcerun) asks
    for it."""
    grid = f"results/{preset}/grid.json"
    if not Path(table).exists():
        return grid
    with Path(table).open(newline="") as handle:
        tabled = {tuple(row.get(column) for column in columns) for row in csv.DictReader(handle)}
    return grid if set(wanted) - tabled else ancient(grid)


def aggregate_grid(wildcards):
    """aggregate's grid input (`grid_while_tabled`): display edits must not rerun aggregate,
    which reads every run."""
    preset = wildcards.preset
    return grid_while_tabled(preset, f"results/{preset}/tables/runs.csv", ("task", "variant", "seed"),
                             {(task, variant, str(seed)) for task, variant, seed in grid_runs(preset)})


def figure_names(preset, task):
    """The figures a task gets: the rank figure only with two factorized ranks to compare (the
    figure's own test: sparse variants' ranks are `beyond_sparse`'s), the stages figure only for
    the two-wave CarRacing evaluation."""
    ranks = {variant_config(task, v).get("rank") for v in runs(preset)[task]["variants"]
             if variant_encoding(task, v) == "factorized"} - {None}
    wanted = {"rank": len(ranks) >= 2, "stages": config["tasks"][task]["family"] == "car_racing"}
    return [name for name in FIGURE_TABLE if wanted.get(name, True)]


def figure_grid(figure):
    """Input function of a figure rule: the preset's grid.json, once the target is known to be
    one of the preset's figures (otherwise every run it needs would be scheduled first, and the
    figure fail at the end)."""

    def grid(wildcards):
        tasks = runs(wildcards.preset)
        if wildcards.task not in tasks:
            raise WorkflowError(f"figures/{wildcards.preset}/{wildcards.task}_{figure}: task "
                                f"{wildcards.task!r} is not in preset {wildcards.preset!r} "
                                f"(its tasks: {', '.join(tasks)})")
        if figure not in figure_names(wildcards.preset, wildcards.task):
            why = ("is not a two-wave (CarRacing) task" if figure == "stages" else
                   f"has fewer than two factorized ranks in preset {wildcards.preset!r}")
            raise WorkflowError(f"figures/{wildcards.preset}/{wildcards.task}_{figure}: "
                                f"{wildcards.task!r} {why}, so it has no {figure} figure")
        return f"results/{wildcards.preset}/grid.json"

    return grid


def figure_files(preset, exts=("pdf", "png")):
    """Every figure file of the preset."""
    return [
        f"figures/{preset}/{task}_{name}.{ext}"
        for task in runs(preset)
        for name in figure_names(preset, task)
        for ext in exts
    ]


def table_files(preset):
    return [f"results/{preset}/tables/{name}.{ext}" for name in TABLES for ext in ("csv", "md", "tex")]


def all_targets(preset):
    """The default target: tables, figures, the analyses beyond the paper and the report."""
    return (
        table_files(preset)
        + figure_files(preset)
        + beyond_files(preset)
        + [f"paper/{preset}/report.md", f"paper/{preset}/report.html"]
    )


# --- beyond the paper (issue #7) -----------------------------------------------------------------
BEYOND_ENGINE = {"mutation_effects": "mutation_effects.csv", "gradient": "gradient.csv"}  # item → file
BEYOND_RUNS_CSV = ("rank_study", "sparse")  # items drawn from runs.csv alone


def beyond_tasks(preset, item):
    """Tasks of one beyond item in the preset, enabled families only: task → entry (or None)."""
    spec = preset_config(preset).get("beyond", {}).get(item)
    if not spec:
        return {}
    chosen = spec["runs"] if item in BEYOND_ENGINE else dict.fromkeys(spec)
    return {task: entry for task, entry in chosen.items() if task in runs(preset)}


def beyond_runs(preset, item, task):
    """The (variant, seed) runs of a beyond item for one task."""
    spec = preset_config(preset)["beyond"][item]
    n_seeds = spec.get("seeds", len(seeds(preset, task)))
    return [(variant, seed) for variant in spec["runs"][task]["variants"] for seed in range(n_seeds)]


def beyond_run_dirs(preset, item, task):
    """The engine directories of a beyond item for one task: variants × seeds."""
    return [f"results/{preset}/beyond/{item}/{task}/{variant}/seed{seed}"
            for variant, seed in beyond_runs(preset, item, task)]


def beyond_logs(preset, item, task):
    """The committed table that collects a beyond item's engine logs for one task."""
    return f"results/{preset}/tables/beyond/{task}_{item}_logs.csv"


def beyond_logs_grid(wildcards):
    """collect_logs's grid input (`grid_while_tabled`): a display edit redraws the analysis from
    the committed table without the engine runs."""
    preset, item, task = wildcards.preset, wildcards.item, wildcards.task
    return grid_while_tabled(preset, beyond_logs(preset, item, task), ("variant", "seed"),
                             {(variant, str(seed)) for variant, seed in beyond_runs(preset, item, task)})


def beyond_outputs(preset, folder, exts):
    """`<folder>/beyond/<task>_<item>.<ext>` for every item and task of the preset."""
    return [
        f"{folder}/beyond/{task}_{item}.{ext}"
        for item in [*BEYOND_ENGINE, *BEYOND_RUNS_CSV]
        for task in beyond_tasks(preset, item)
        for ext in exts
    ]


def beyond_files(preset):
    """Every table and figure beyond the paper of the preset."""
    return beyond_outputs(preset, f"results/{preset}/tables", ("csv", "md", "tex")) + beyond_outputs(
        preset, f"figures/{preset}", ("pdf", "png")
    )


def beyond_report(item, kind):
    """The report() output of one beyond analysis: its CSV table or PDF figure, with its caption."""
    folder = "results/{preset}/tables" if kind == "table" else "figures/{preset}"
    ext = "csv" if kind == "table" else "pdf"
    return report(
        f"{folder}/beyond/{{task}}_{item}.{ext}",
        caption=f"../report/beyond_{item}.rst",
        category="Beyond the paper",
        subcategory="{task}",
    )


def probe_args(wildcards):
    """`neuroevo mutation-effects` options of the task: probed generations, parents, mutations."""
    entry = preset_config(wildcards.preset)["beyond"]["mutation_effects"]["runs"][wildcards.task]
    generations = " ".join(map(str, entry["generations"]))
    return f"--generations {generations} --parents {entry['parents']} --mutations {entry['mutations']}"


def grid_spec(preset):
    """The part of the grid the analysis needs, written to results/<preset>/grid.json."""
    tasks = {}
    for task, entry in runs(preset).items():
        spec = config["tasks"][task]
        chosen = entry["variants"]
        tasks[task] = {
            "family": spec["family"],
            "title": entry.get("title", spec["title"]),
            "series": spec["series"],
            "ylabel": spec["ylabel"],
            "seeds": seeds(preset, task),
            "variants": {v: variant_config(task, v) for v in chosen},
            # a preset may name its own (an ablation compares variants the task's list has not)
            "compare": [v for v in entry.get("compare", spec["compare"]) if v in chosen],
            "treatment": spec["treatment"] if spec["treatment"] in chosen else None,
            "figure_variants": [v for v in entry.get("figure_variants", spec.get("figure_variants", chosen))
                                if v in chosen],
        }
        if spec.get("test_generations"):  # only where set: other grids' grid.json stay as they were
            tasks[task]["test_generations"] = spec["test_generations"]
    return {"preset": preset, "tasks": tasks}


@functools.cache
def grid_text(preset):
    """grid.json's text: `grid_spec` as indented JSON. Cached: the grid rule's input function
    and its params both ask, and the configs do not change while Snakemake runs."""
    return json.dumps(grid_spec(preset), indent=2) + "\n"


def grid_configs(wildcards):
    """The config files as the grid rule's input: `ancient` while grid.json already holds the
    preset's grid, so an edit that leaves it as it is (another preset, a comment, a resource)
    does not redraw the preset's tables, figures and report; plain once it differs."""
    grid = Path(f"results/{wildcards.preset}/grid.json")
    current = grid.exists() and grid.read_text() == grid_text(wildcards.preset)
    return [ancient(path) if current else path for path in workflow.configfiles]


def evolve_resources(preset, task):
    """The preset's evolve resources, with the task's overrides merged key by key."""
    return {**preset_config(preset)["resources"], **runs(preset)[task]["resources"]}


def evolve_args(wildcards):
    """Everything after `neuroevo run CONFIG --out DIR` but the pool size (`engine_options`,
    as options). A function of the wildcards alone, so Snakemake records it and reruns a job
    whose arguments an edit changed; the rules add `--workers {threads}` (the threads the job
    got: `--cores` may cap the preset's), which sizes an RL task's environment pool, not its
    results: a rerun with other threads resumes the same run."""
    engine_preset, device, sets = engine_options(wildcards.preset, wildcards.task, wildcards.variant,
                                                 wildcards.seed)
    args = ["--preset", engine_preset] if engine_preset else []
    args += ["--device", device]
    for item in sets:
        args += ["--set", item]  # the engine takes one KEY=VALUE per --set
    return " ".join(shlex.quote(a) for a in args)


def engine_options(preset, task, variant, seed):
    """What one run's engine config is loaded with: the engine preset (or None), the device
    (the CPU for a job that asks for no GPU) and the `--set` KEY=VALUEs (seed, the preset's
    text, the variant's overrides). One place for the evolve command and its DAG-build check."""
    entry = preset_config(preset)
    device = entry["device"]
    if device == "auto" and not evolve_resources(preset, task)["gpu"]:
        device = "cpu"  # a job without a GPU must not borrow the one another job holds
    sets = [f"seed={seed}"]
    data = runs(preset)[task].get("data") or []
    if data:  # the text the job declares as input is the text it reads (not a copy in its config)
        sets.append(f"task.text={data[0]}")
    sets += [f"{key}={_scalar(value)}" for key, value in variant_config(task, variant)["set"].items()]
    return entry["engine_preset"], device, sets


def engine_configs(wildcards):
    """The variant's engine config and the files it `extends`, as `ancient` inputs: what reruns
    a job after an edit of them is `engine_config_content` among its params, so a comment or a
    reformat reruns nothing (on a cluster: no GPU jobs submitted just to find their runs done)."""
    return [ancient(str(path)) for path in _config_chain(wildcards.task, wildcards.variant)]


def engine_config_content(wildcards):
    """A hash of what the variant's config files say for this job (parsed YAML, not text: its
    sections and its preset's engine preset entry, not the other presets): a param of the
    engine rules, so Snakemake reruns a job whose files changed one of its settings, and only
    then."""
    engine_preset = preset_config(wildcards.preset)["engine_preset"]
    said = [[{key: value for key, value in data.items() if key != "presets"},
             (data.get("presets") or {}).get(engine_preset)]
            for _, data in _parsed_chain(wildcards.task, wildcards.variant)]
    return hashlib.sha256(json.dumps(said, sort_keys=True, default=str).encode()).hexdigest()[:16]


def preset_engine_configs(preset):
    """Every engine config (and the files they `extend`) of the preset's runs, once each."""
    return sorted({str(path) for task, run in runs(preset).items() for variant in run["variants"]
                   for path in _config_chain(task, variant)})


def _config_chain(task, variant):
    """The variant's engine config, then each file it `extends`, child first."""
    return [path for path, _ in _parsed_chain(task, variant)]


@functools.cache
def _parsed_chain(task, variant):
    """(path, parsed YAML) of the variant's engine config and each file it `extends`, child
    first; a missing file parses as {} and ends the chain. Read once per DAG build, however many
    jobs, inputs and params look (read-only: callers copy what they change)."""
    path = Path(variant_config(task, variant)["config"])
    chain = []
    while True:
        data = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
        chain.append((path, data))
        if not data.get("extends"):
            return tuple(chain)
        path = path.parent / data["extends"]


def variant_encoding(task, variant):
    """encoding.kind of a variant (the engine's default, dense, where no file names it)."""
    return yaml_setting(None, task, variant, "encoding.kind") or "dense"


def yaml_setting(preset, task, variant, dotted):
    """One `section.key` of the engine config a variant's runs load, read from the YAML alone
    (the engine may be installed only in the jobs' conda envs): the variant's `set`, else the
    preset's engine preset entry, else the nearest config of its chain that has the key: the
    engine loader's precedence. None where nothing sets it."""
    overrides = variant_config(task, variant).get("set", {})
    if dotted in overrides:
        return overrides[dotted]
    section, key = dotted.split(".", 1)
    chain = [data for _, data in _parsed_chain(task, variant)]
    engine_preset = preset_config(preset)["engine_preset"] if preset else None
    for data in chain if engine_preset else ():
        entry = (data.get("presets") or {}).get(engine_preset) or {}
        if dotted in entry:
            return entry[dotted]
    for data in chain:
        values = data.get(section)
        if isinstance(values, dict) and key in values:  # a null section keeps its base's
            return values[key]
    return None


def conda_env(wildcards):
    """Engine env for TinyStories, the RL env (gymnasium, ALE, Box2D, MuJoCo) for the rest."""
    family = config["tasks"][wildcards.task]["family"]
    return "../../envs/rl.yaml" if family in RL_FAMILIES else "../../envs/engine.yaml"


def _scalar(value):
    """A YAML scalar as the engine's `--set` reads it (true/false/null, numbers, strings as is)."""
    return value if isinstance(value, str) else json.dumps(value)


def _check_grid():
    """Cross-references of every preset exist, and the selected one's engine configs load."""
    tasks = config["tasks"]
    for name, task in tasks.items():
        for key in [*task["compare"], *([task["treatment"]] if task["treatment"] else [])]:
            if key not in task["variants"]:
                raise WorkflowError(f"configs/experiments.yaml: tasks.{name} compares unknown variant {key!r}")
        for key in task.get("figure_variants", []):
            if key not in task["variants"]:
                raise WorkflowError(f"configs/experiments.yaml: tasks.{name}.figure_variants has unknown variant {key!r}")
    for preset, entry in config["presets"].items():
        for task, run in entry["runs"].items():
            if task not in tasks:
                raise WorkflowError(f"configs/experiments.yaml: presets.{preset}.runs has unknown task {task!r}")
            for variant in run["variants"]:
                if variant not in tasks[task]["variants"]:
                    raise WorkflowError(
                        f"configs/experiments.yaml: presets.{preset}.runs.{task} has unknown variant {variant!r}"
                    )
            for key in ("compare", "figure_variants"):
                for variant in run.get(key, []):
                    if variant not in run["variants"]:
                        raise WorkflowError(
                            f"configs/experiments.yaml: presets.{preset}.runs.{task}.{key} names {variant!r}, "
                            f"which the preset does not run (its variants: {', '.join(run['variants'])})"
                        )
    for preset, entry in config["presets"].items():
        _check_beyond(preset, entry.get("beyond", {}))
    if not runs(PRESET):
        raise WorkflowError(
            f"configs/experiments.yaml: preset {PRESET!r} runs no task of the enabled families {config['families']}"
        )
    _check_engine_configs(PRESET)


def _check_engine_configs(preset):
    """Every engine config of the preset exists and loads as its jobs will load it: through the
    engine's own loader, with the same preset, device and overrides, so a bad key or value (a
    MuJoCo env id or Atari game too: their TaskConfigs check them on load) fails the DAG build in
    one line, not each job in its log after two retries."""
    for task, run in runs(preset).items():
        for variant in run["variants"]:
            _load_engine_config(preset, task, variant)


def _load_engine_config(preset, task, variant):
    """Load the variant's engine config as its jobs will (seed 0 stands for every seed: seeds
    differ only in `seed=`); skipped where the engine cannot load the task's family here."""
    path = _existing_engine_config(task, variant)
    load_config = _family_loader(config["tasks"][task]["family"])
    if load_config is None:
        return
    engine_preset, device, sets = engine_options(preset, task, variant, seed=0)
    try:
        loaded = load_config(path, engine_preset, (*sets, f"device={device}"))  # the CLI's order
    except ValueError as error:  # the engine's ConfigError: one line naming the key
        raise WorkflowError(f"engine config {path} (preset {preset!r}, task {task}, "
                            f"variant {variant}) does not load: {error}") from None
    # a variant's `rank` only labels it (tables, the rank figure): the runs search the rank the
    # config and `set:` give, so the two must agree
    entry = variant_config(task, variant)
    rank = entry.get("rank")
    if rank is not None and loaded.encoding.kind != "dense" and loaded.encoding.rank != rank:
        raise WorkflowError(
            f"configs/experiments.yaml: tasks.{task}.variants.{variant} is labelled rank {rank} "
            f"but its runs search rank {loaded.encoding.rank} ({path}): add "
            f"`set: {{encoding.rank: {rank}}}` to the variant, or correct its `rank`")
    if rank is not None and loaded.encoding.kind != "factorized" and not entry.get("label"):
        raise WorkflowError(  # the legends' fallback for a ranked variant names a factorization
            f"configs/experiments.yaml: tasks.{task}.variants.{variant} has rank {rank} but a "
            f"{loaded.encoding.kind} encoding: give it a `label:` for the legends and tables")


def engine_tokenizer(wildcards):
    """The `task.tokenizer` file a language run reads, as its input (so replacing the file reruns
    its runs, and the paper's is fetched by `fetch_paper_tokenizer`), or none. From the YAML, so
    also where the engine does not import here."""
    tokenizer = yaml_setting(wildcards.preset, wildcards.task, wildcards.variant, "task.tokenizer")
    return [tokenizer] if tokenizer else []


def _existing_engine_config(task, variant):
    """The variant's engine config path, or a one-line error pointing at the entry to fix."""
    path = variant_config(task, variant)["config"]
    if not Path(path).exists():
        raise WorkflowError(
            f"engine config {path} (task {task}, variant {variant}) does not exist: fix "
            f"tasks.{task}.variants.{variant}.config in configs/experiments.yaml (or, if the "
            f"family's configs have not landed yet, leave {config['tasks'][task]['family']!r} "
            f"out of `families`)"
        )
    return path


@functools.cache
def _family_loader(family):
    """The engine's `load_config` where it can load `family`'s configs here, else None. Where the
    engine, or a family's RL extra, is installed only in the jobs' conda envs (`--sdm conda`),
    the jobs check those configs themselves, with a warning here."""
    load_config = _engine_loader()
    if load_config is None:
        return None
    from neuroevo.sections import TaskUnavailable, family_sections

    try:
        family_sections(family)
    except TaskUnavailable as error:
        logger.warning(f"engine configs of family {family!r} are checked by their jobs: {error}")
        return None
    return load_config


@functools.cache
def _engine_loader():
    """The engine's `load_config`, or None (with one warning) where neuroevo does not import."""
    try:
        from neuroevo.config import load_config
    except ImportError as error:
        logger.warning(f"engine configs are checked by their jobs: neuroevo does not import here ({error})")
        return None
    return load_config


def _check_beyond(preset, beyond):
    """Beyond items name tasks and variants the preset runs (they share its labels and GA runs)."""
    where = f"configs/experiments.yaml: presets.{preset}.beyond"
    run_entries = config["presets"][preset]["runs"]
    for item, spec in beyond.items():
        chosen = spec["runs"] if item in BEYOND_ENGINE else dict.fromkeys(spec, {"variants": []})
        for task, entry in chosen.items():
            if task not in run_entries:
                raise WorkflowError(f"{where}.{item} names task {task!r}, which presets.{preset}.runs does not run")
            for variant in entry["variants"]:
                if variant not in run_entries[task]["variants"]:
                    raise WorkflowError(
                        f"{where}.{item}.runs.{task} has variant {variant!r}, which presets.{preset}.runs.{task} does not run"
                    )
            if item == "mutation_effects" and "neutral_tolerance" not in config["tasks"][task]:
                raise WorkflowError(f"{where}.mutation_effects probes {task!r}: set tasks.{task}.neutral_tolerance")
            if item == "gradient" and config["tasks"][task]["family"] != "tinystories":
                raise WorkflowError(f"{where}.gradient.runs.{task}: gradient descent needs a tinystories task")


_check_grid()


# One pattern per wildcard, from the config's own names, so no path can match two ways
# (variants longest first: `factorized-r1` must not match inside `factorized-r16`).
WILDCARDS = {
    "preset": "|".join(config["presets"]),
    "task": "|".join(config["tasks"]),
    "variant": "|".join(sorted({v for t in config["tasks"].values() for v in t["variants"]}, key=len, reverse=True)),
    "seed": r"\d+",
    "figure": "|".join(FIGURE_TABLE),
}
