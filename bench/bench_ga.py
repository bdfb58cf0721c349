"""Where a generation's time goes besides the evaluation (issue #6: the GA around the forward).

`neuroevo run` records per generation only the evaluation and the wall time; on the H100 the
rest was 30–36 ms a generation at P = 512 (bench/RESULTS.md), 5% of a generation on the paper's
evaluation set but 18% of the 0.2 s that one minute per 300-generation seed allows. This times
each part of that rest as `run.run` does it, on the run's device, with the device waited for
after each: the GA's `tell` (rank, select, clone the elites, breed and mutate the children on the
device), the elite's seed chain written, the checkpoint (the elites' weights copied to the host,
then saved: timed apart, to tell a slow copy from a slow disk; a run saves it at most every
`run.CHECKPOINT_SECONDS`, this times one save), and the two CSV logs rewritten
(each written whole and fsynced). Fitness values are random (no part's cost depends
on them); `--evaluate` also times the task's evaluation for scale.

    python bench/bench_ga.py                                   # paper dense, P = 512, k = 16
    python bench/bench_ga.py --config configs/tinystories/factorized.yaml --device cuda --evaluate
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from timing import sync  # noqa: E402

from neuroevo.config import RunConfig, load_config  # noqa: E402
from neuroevo.ga import GeneticAlgorithm  # noqa: E402
from neuroevo.genome import save_genome  # noqa: E402
from neuroevo.kernels import gpu_noise  # noqa: E402
from neuroevo.atomic import atomic_torch_save  # noqa: E402
from neuroevo.logs import FITNESS_COLUMNS, TIMING_COLUMNS, CsvLog  # noqa: E402
from neuroevo.run import build_task, resolve_device  # noqa: E402
from neuroevo.tasks import Task  # noqa: E402


def timed(part: Callable[[], object], device: torch.device) -> float:
    start = time.perf_counter()
    part()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tinystories/dense.yaml")
    parser.add_argument("--preset", default="quick", help="the config's preset (its task data; "
                        "quick reads the shipped story corpus, offline)")
    parser.add_argument("--population", type=int, default=512)
    parser.add_argument("--elites", type=int, default=16)
    parser.add_argument("--generations", type=int, default=6, help="timed after one warm-up")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--evaluate", action="store_true", help="also time the evaluation")
    parser.add_argument("--torch-noise", action="store_true",
                        help="mutate through torch's ops instead of the fused Triton noise kernel "
                             "(kernels/gpu_noise.py, on by default on CUDA)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    gpu_noise.NOISE_KERNEL = not args.torch_noise
    config = load_config(args.config, args.preset,
                         [f"ga.population={args.population}", f"ga.elites={args.elites}",
                          f"ga.generations={args.generations + 2}", f"device={device.type}"])
    task = build_task(config, device)
    with tempfile.TemporaryDirectory(prefix="bench_ga.") as folder:
        parts = time_parts(task, config, device, args.generations, args.evaluate, Path(folder))
    dim = task.layout.dim
    noise = ", noise kernel on" if gpu_noise.usable(torch.empty(0, device=device)) else ""
    print(f"# bench_ga — {args.config} ({config.encoding.kind}){noise}, P={args.population} "
          f"k={args.elites}, D={dim:,}, device={device}, median of {args.generations}")
    rest = 0.0
    for name, values in parts.items():
        median = statistics.median(values)
        rest += median if name != "evaluate" else 0.0
        print(f"{name:>36} | {median * 1e3:8.2f} ms")
    print(f"{'the rest (all but evaluate)':>36} | {rest * 1e3:8.2f} ms")


def time_parts(task: Task, config: RunConfig, device: torch.device, generations: int,
               evaluate: bool, out: Path) -> dict[str, list[float]]:
    """{part: seconds in each of `generations` generations after a warm-up}, the run's files
    written under `out`."""
    ga = GeneticAlgorithm(task.layout, config.ga, config.seed, device)
    fitness_log = CsvLog(out / "fitness.csv", FITNESS_COLUMNS)
    timing_log = CsvLog(out / "timing.csv", TIMING_COLUMNS)
    generator = torch.Generator().manual_seed(0)
    parts: dict[str, list[float]] = {}
    population = config.ga.population
    for generation in range(generations + 1):  # the first is a warm-up
        seconds: dict[str, float] = {}
        if evaluate:
            seconds["evaluate"] = timed(lambda: task.evaluate(ga.ask(), ga.generation), device)
        fitness = torch.randn(population, generator=generator).to(device)
        record = None

        def tell() -> None:
            nonlocal record
            record = ga.tell(fitness)

        seconds["tell (rank, select, breed, mutate)"] = timed(tell, device)
        seconds["elite seed chain"] = timed(lambda: save_genome(
            out / "elite.json", record.best_genome, fitness=record.best_fitness), device)
        state: dict = {}
        # the checkpoint in its two parts: the elites' weights to the host, then the file
        seconds["checkpoint: elites to host"] = timed(lambda: state.update(ga.state_dict()),
                                                      device)
        seconds["checkpoint: write"] = timed(lambda: atomic_torch_save(
            {"ga": state}, out / "checkpoint.pt"), device)
        row = {"generation": record.generation, **record.stats,
               "evaluations": population, "eval_seconds": 0.0, "wall_seconds": 0.0}
        seconds["logs"] = timed(lambda: (fitness_log.append(row), timing_log.append(row)), device)
        if generation:
            for name, value in seconds.items():
                parts.setdefault(name, []).append(value)
    return parts


if __name__ == "__main__":
    main()
