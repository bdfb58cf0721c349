"""`neuroevo`: run, describe and replay evolution runs; fetch data; the analyses beyond the paper
(mutation effects, the gradient-descent reference). Wiring only.

Every user-facing error (bad config, missing data, unknown task) ends as one line on stderr and
exit status 2, before any compute is spent.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the hints only: each command imports the engine's modules when it runs
    from neuroevo.config import RunConfig

EPILOG = """examples:
  neuroevo run configs/tinystories/factorized.yaml --preset quick --out runs/lm-fact
  neuroevo run configs/tinystories/dense.yaml --preset quick --set seed=3 --set ga.population=64 \\
      --out runs/x
  neuroevo run configs/tinystories/dense.yaml --preset quick --set seed=3 --set ga.population=64 \\
      --out runs/x --resume                                          # continue a killed run
  neuroevo describe configs/tinystories/factorized.yaml                  # search-space sizes
  neuroevo fetch-data tinystories   # the paper's data (1.9 GB, once): configs without --preset
  neuroevo fetch-data paper-tokenizer     # the authors' BPE, for --set task.tokenizer=data/...
  neuroevo replay runs/lm-fact/elite.json                                # re-develop the elite
  neuroevo replay runs/lm-fact/elite.json --sample 3                     # and 3 stories it writes
  neuroevo mutation-effects configs/tinystories/factorized.yaml --preset quick --out runs/me \\
      --generations 1 10 20 --parents 4 --mutations 32           # fitness change of 1 mutation
  neuroevo gradient configs/tinystories/dense.yaml --preset quick --out runs/gd   # Adam reference

environment:
  NEUROEVO_CPU_KERNELS=0   torch's ops instead of the fused C kernels on CPU
  NEUROEVO_GPU_KERNELS=0   torch's ops instead of the Triton kernels on CUDA
  NEUROEVO_GPU_KERNELS=unverified  the Triton kernels also in the precisions kernels/gpu.py's
                           FAULTED_ON_GPU replaces: bf16 (Triton 3.6 miscompiled it on an
                           H100)
  NEUROEVO_CACHE=DIR       where the compiled C kernels are kept (default ~/.cache/neuroevo)
"""


DEVICE_HELP = "override the config's device (auto = cuda if available)"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written, and an option's default in its help where it has one (not for
    flags, unset options, or a help that already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command with --resume to continue", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 — user-facing errors become one line
        if _is_user_error(error):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise


def _parser() -> argparse.ArgumentParser:
    from neuroevo.config import DEVICES

    parser = argparse.ArgumentParser(
        prog="neuroevo", epilog=EPILOG, formatter_class=_HelpFormatter,
        description="Deep-GA neuroevolution with dense and low-rank factorized encodings "
                    "(Garbus & Pollack 2025).")
    commands = parser.add_subparsers(dest="command", required=True)
    add_command = functools.partial(commands.add_parser, formatter_class=_HelpFormatter)

    run = add_command("run", help="evolve one task × encoding × seed",
                      description="Evolve one configuration and write a run directory "
                                  "(fitness.csv, timing.csv, elite.json, summary.json, "
                                  "checkpoint/).")
    _config_arguments(run)
    run.add_argument("--out", required=True, type=Path, help="run directory to create or resume")
    run.add_argument("--resume", action="store_true",
                     help="continue from OUT/checkpoint (reproduces the uninterrupted log); a "
                          "run of another config or other data there is refused")
    run.add_argument("--restart-changed", action="store_true",
                     help="with --resume: clear a run of another config or other data and start "
                          "again instead (what the Snakemake workflow does after an edit)")
    run.add_argument("--device", choices=DEVICES,
                     help=DEVICE_HELP)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    describe = add_command("describe", help="per-layer shapes and search-space sizes",
                           description="Print each layer's shape, encoding, weights and "
                                       "searched degrees of freedom, with totals.")
    _config_arguments(describe, pool=False)
    describe.add_argument("--json", action="store_true", help="machine-readable output")
    describe.set_defaults(handler=_describe)

    replay = add_command("replay", help="re-develop an elite from its seed chain",
                         description="Re-develop elite.json from its seeds, re-evaluate "
                                     "it and compare with the logged fitness.",
                         epilog="exit status: 0 when the replayed fitness matches the "
                                "logged one (within 1e-4 · max(1, |logged|)), 1 when it "
                                "differs, 2 on a user error (e.g. no elite.json)")
    replay.add_argument("elite", type=Path, help="path to a run's elite.json")
    replay.add_argument("--device", choices=DEVICES, default="auto",
                        help="where to re-develop and play the elite (auto = cuda if available)")
    replay.add_argument("--video", type=Path, help="RL tasks: record the elite playing (mp4)")
    stories = replay.add_argument_group(
        "language tasks: what the elite writes",
        "--sample N prints N story openings the run did not score, each continued by the elite")
    stories.add_argument("--sample", type=_positive_int, default=0, metavar="N",
                         help="continue N held-out story openings")
    stories.add_argument("--prompt-tokens", type=_positive_int, default=8,
                         help="tokens of each story given as its opening")
    stories.add_argument("--max-tokens", type=_positive_int, default=60,
                         help="tokens written at most per story (fewer where it writes </s>)")
    stories.add_argument("--temperature", type=_non_negative_float, default=1.0,
                         help="softmax temperature of the draws; 0 takes the most likely token")
    replay.set_defaults(handler=_replay)

    effects = add_command(
        "mutation-effects", help="fitness change of single mutations of the GA's survivors",
        description="Run the GA of a config and, at chosen generations, score many one-gene "
                    "children of sampled survivors beside their parent (mutation_effects.csv).")
    _config_arguments(effects)
    effects.add_argument("--out", required=True, type=Path, help="directory to write")
    effects.add_argument("--generations", type=int, nargs="+", required=True,
                         help="generations (1..ga.generations) whose survivors are probed")
    effects.add_argument("--parents", type=int, default=4,
                         help="survivors probed per generation (at most ga.elites: all of them "
                              "if fewer)")
    effects.add_argument("--mutations", type=int, default=32, help="children per parent")
    effects.add_argument("--device", choices=DEVICES,
                         help=DEVICE_HELP)
    effects.add_argument("--quiet", action="store_true", help="no progress bar")
    effects.set_defaults(handler=_mutation_effects)

    gradient = add_command(
        "gradient", help="train the language model with Adam (the GD reference)",
        description="Train the config's model with Adam from the GA's first initial individual, "
                    "for the GA's budget of forward passes (gradient.csv).")
    _config_arguments(gradient, pool=False)
    gradient.add_argument("--out", required=True, type=Path, help="directory to write")
    gradient.add_argument("--lr", type=float, default=3e-3, help="Adam step size")
    gradient.add_argument("--forward-cost", type=float, default=3.0,
                          help="forward passes one step costs (forward + backward)")
    gradient.add_argument("--steps", type=int,
                          help="Adam steps (default: population·generations / forward cost)")
    gradient.add_argument("--device", choices=DEVICES,
                          help=DEVICE_HELP)
    gradient.add_argument("--quiet", action="store_true", help="no progress bar")
    gradient.set_defaults(handler=_gradient)

    fetch = add_command(
        "fetch-data", help="download a dataset (needs internet)",
        description="tinystories: download TinyStories' training text at the pinned revision "
                    "through huggingface_hub, check its sha256 against the pinned one, keep its "
                    "first stories one per line. paper-tokenizer: download the authors' "
                    "tokenizer-bpe.json at the pinned commit (for task.tokenizer) and check it "
                    "is their 2,048-token BPE. Each records its files' sha256 in OUT/SOURCE.json "
                    "(one record per file).")
    fetch.add_argument("dataset", choices=("tinystories", "paper-tokenizer"),
                       help="what to fetch")
    fetch.add_argument("--out", type=Path, default=Path("data/tinystories"),
                       help="directory to write the file(s) and SOURCE.json into")
    fetch.add_argument("--n-stories", type=int, default=10_000,
                       help="stories to keep, from the start: the paper's 10,000 go to "
                            "first10k.txt (what the configs read), N others to firstN.txt")
    fetch.set_defaults(handler=_fetch)
    return parser


def _config_arguments(parser: argparse.ArgumentParser, pool: bool = True) -> None:
    parser.add_argument("config", type=Path, help="a YAML config, e.g. configs/tinystories/dense.yaml")
    parser.add_argument("--preset", help="apply a preset defined in the config (e.g. quick)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one key, e.g. ga.population=64 (repeat for more keys)")
    if pool:  # commands that play episodes
        parser.add_argument("--workers", type=int, metavar="N",
                            help="environment workers of an RL task (task.workers; Atari's "
                                 "task.threads; 0 = one per available core; 1 steps them in "
                                 "this process); the language task "
                                 "has none. Not part of a run's identity: a run resumed with "
                                 "other workers is the same")


def _load(args: argparse.Namespace) -> RunConfig:
    """The validated RunConfig of a command that takes CONFIG, --preset, --set and --device."""
    from neuroevo.config import ConfigError, load_config

    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    config = load_config(args.config, args.preset, overrides)
    pool_size = getattr(config.task, "POOL_SIZE", None)  # the language task has no pool
    workers = getattr(args, "workers", None)
    if workers is None or pool_size is None:
        return config
    try:  # the TaskConfig's own checks (e.g. workers ≥ 0) run again on the replaced value
        task = dataclasses.replace(config.task, **{pool_size: workers})
    except ValueError as error:
        raise ConfigError(f"--workers {workers}: {error}") from None
    return dataclasses.replace(config, task=task)


def _run(args: argparse.Namespace) -> int:
    config = _load(args)  # before the engine's import (torch, 2 s): a config error is instant
    from neuroevo.run import RunError, run

    if args.restart_changed and not args.resume:
        raise RunError("--restart-changed only applies with --resume")
    summary = run(config, args.out, resume=args.resume, progress=not args.quiet,
                  restart_changed=args.restart_changed)
    final = summary["final"]
    print(f"{args.out}: best {final['best']:.6g}, elite mean {final['elite_mean']:.6g} "
          f"after {final['generation']} generations ({summary['wall_seconds']:.1f} s)")
    return 0


def _mutation_effects(args: argparse.Namespace) -> int:
    from neuroevo.mutation_effects import ProbeConfig, probe

    config = _load(args)
    summary = probe(config, args.out, ProbeConfig(tuple(args.generations), args.parents,
                                                  args.mutations), progress=not args.quiet)
    print(f"{args.out}: {summary['probes']} single-mutation children scored "
          f"({summary['wall_seconds']:.1f} s)")
    return 0


def _gradient(args: argparse.Namespace) -> int:
    from neuroevo.gradient import GradientConfig, train

    config = _load(args)
    summary = train(config, args.out, GradientConfig(args.lr, args.forward_cost, args.steps),
                    progress=not args.quiet)
    print(f"{args.out}: fitness {summary['final']['fitness']:.6g} after {summary['steps']} Adam "
          f"steps ({summary['forward_passes']:g} forward passes, {summary['wall_seconds']:.1f} s)")
    return 0


def _describe(args: argparse.Namespace) -> int:
    from neuroevo.config import load_config

    config = load_config(args.config, args.preset, args.overrides)
    layout, note = _layout(config)
    totals = {"network": layout.network_weights, "genome": layout.dim,
              "searched": layout.searched_dim}
    if args.json:
        print(json.dumps({"layers": layout.rows, "totals": totals,
                          **({"note": note} if note else {})}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.config} ({config.task.name}, {config.encoding.kind})")
    columns = {"layer": "layer", "kind": "kind", "shape": "shape", "encoding": "encoding",
               "genome": "genome", "weights": "weights", "searched": "searched",
               "w_init_std": "W init std"}
    numeric = ("weights", "searched", "w_init_std")
    for key, title in columns.items():
        table.add_column(title, justify="right" if key in numeric else "left",
                         overflow="fold")  # a narrow terminal wraps names, never cuts them
    for row in layout.rows:
        table.add_row(*(_cell(row[key]) for key in columns))
    table.caption = ("shape: W as (out, in), W = A·B; genome: tensors as stored, a linear layer's "
                     "transposed (B holds Bᵀ, in×r; A holds Aᵀ, r×out; weight holds Wᵀ); "
                     "W init std: of W's entries at init (of the product A·B for factors)")
    console = Console(width=None if sys.stdout.isatty() else 160)  # a pipe: no wrapped cells
    console.print(table)
    console.print(f"network weights {totals['network']:,} · genome {totals['genome']:,} · "
                  f"searched {totals['searched']:,} "
                  f"({totals['searched'] / totals['network']:.1%} of the network)")
    if note:
        console.print(f"[yellow]note:[/] {note}")
    return 0


def _cell(value: int | float | str | None) -> str:
    """One `describe` cell: counts with thousands separators, stds to 3 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _layout(config) -> tuple:
    """The config's genome layout, and a note when it had to be made without the task's data
    (the language task's text: shapes do not need it, only its vocabulary size)."""
    import torch

    from neuroevo.data.tinystories import SPECIAL_OFFSET, DataError
    from neuroevo.run import build_task
    from neuroevo.tasks import task_module

    try:
        return build_task(config, torch.device("cpu")).layout, ""
    except DataError as error:  # the text, or a task.tokenizer file, is missing or unusable
        module = task_module(config.task.name)
        if not hasattr(module, "layout_without_data"):
            raise
        return module.layout_without_data(config), (
            f"without the data ({error}): the vocabulary is taken as full "
            f"({config.task.vocab_size:,} + {SPECIAL_OFFSET} specials)")


def _replay(args: argparse.Namespace) -> int:
    from neuroevo.config import ConfigError, config_from_dict
    from neuroevo.genome import develop, load_genome
    from neuroevo.run import build_task, resolve_device

    genome, meta = load_genome(args.elite)
    config = config_from_dict(meta["config"])
    if args.sample and config.task.name != "tinystories":
        raise ConfigError(f"--sample is for the language task; this elite plays "
                          f"{config.task.name} (drop --sample; --video films it)")
    device = resolve_device(args.device)
    task = build_task(config, device)
    theta = develop(genome, task.layout, device)
    fitness = task.replay(theta, meta["generation"], video=args.video,
                          individual=meta.get("individual", 0))
    logged = float(meta["fitness"])
    tolerance = 1e-4 * max(1.0, abs(logged))
    matches = abs(fitness - logged) <= tolerance
    print(f"replayed fitness {fitness:.6g} {'matches' if matches else 'differs from'} the logged "
          f"{logged:.6g} (generation {meta['generation']}, {len(genome.mutations)} mutations, "
          f"{device})")
    recorded = meta.get("data_sha256")  # None: an RL task, or an elite.json from before it
    if recorded is not None and recorded != task.data_sha256:
        print(f"the run's data have changed since it ran (sha256 {recorded[:12]}… then, "
              f"{task.data_sha256[:12]}… now: task.text or task.tokenizer was edited), so its "
              "fitness cannot be reproduced on them")
    if args.sample:
        _print_story_samples(task.story_samples(theta, args.sample, args.prompt_tokens,
                                                args.max_tokens, args.temperature),
                             args.temperature)
    return 0 if matches else 1  # scripts (and CI) can tell a reproduced elite from one that is not


def _print_story_samples(samples: list, temperature: float) -> None:
    """Each sample as its story's index, the opening in brackets and the elite's continuation."""
    how = "the most likely token each step" if temperature == 0 else f"temperature {temperature:g}"
    print(f"\n{len(samples)} story openings continued by the elite ({how}; BPE tokens, "
          "joined by spaces):")
    for sample in samples:
        end = " </s>" if sample.ended else " …"
        print(f"\nstory {sample.story}: [{sample.prompt}] {sample.continuation}{end}")


def _fetch(args: argparse.Namespace) -> int:
    from neuroevo.data.tinystories import fetch_paper_tokenizer, fetch_tinystories

    path = (fetch_paper_tokenizer(args.out) if args.dataset == "paper-tokenizer"
            else fetch_tinystories(args.out, args.n_stories))
    print(f"wrote {path}")
    return 0


def _is_user_error(error: Exception) -> bool:
    from neuroevo.config import ConfigError
    from neuroevo.sections import TaskUnavailable

    if isinstance(error, (ConfigError, TaskUnavailable, FileNotFoundError)):
        return True  # known without importing the engine (torch) only to classify it
    from neuroevo.encoding import EncodingError
    from neuroevo.genome import GenomeFileError
    from neuroevo.run import RunError

    user_errors: tuple[type, ...] = (EncodingError, GenomeFileError, RunError)
    try:
        from neuroevo.data.tinystories import DataError
        user_errors += (DataError,)
    except ImportError:
        pass
    return isinstance(error, user_errors)


if __name__ == "__main__":
    sys.exit(main())
