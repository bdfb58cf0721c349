"""One run: one task × encoding × seed, from a validated config to a finished run directory.

Order matters for clean failures: the config is validated and the task built (data prepared,
environments checked) before the run directory is created, so a bad config or a missing dataset
stops with one line and leaves nothing behind.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import neuroevo
from neuroevo.config import RunConfig
from neuroevo.encoding import EncodingError
from neuroevo.ga import GeneticAlgorithm
from neuroevo.genome import save_genome
from neuroevo.kernels import cpu as cpu_kernels
from neuroevo.kernels import gpu as gpu_kernels
from neuroevo.kernels import gpu_noise
from neuroevo.atomic import atomic_torch_save
from neuroevo.logs import (FITNESS_COLUMNS, TIMING_COLUMNS, CsvLog, progress_interval,
                           write_json)
from neuroevo.provenance import source_revision
from neuroevo.tasks import Task, task_module


# The survivors are checkpointed after a process's first generation, after the last, and between
# them at most this often, at the end of a generation: a kill loses at most this much work plus
# one generation (--resume cuts the logs back to the checkpoint and redoes it to the same bytes).
# Every generation, the write alone took 9 ms on the H100 machine at P = 512 (bench/RESULTS.md):
# a tenth of a generation at issue #6's fixed setting.
CHECKPOINT_SECONDS = 30.0


class RunError(RuntimeError):
    """A run cannot start (e.g. its directory holds another run); one line, with the fix."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device 'cuda' requested but torch sees no CUDA device: use --device cpu")
    return torch.device(name)


def build_task(config: RunConfig, device: torch.device) -> Task:
    if device.type == "cpu":  # few-MB activations and frames are allocated every step
        cpu_kernels.retain_freed_memory()
    task = task_module(config.task.name).build(config, device)
    if config.encoding.kind == "sparse" and not task.layout.sparse:
        raise EncodingError(f"encoding 'sparse' is not wired into the {config.task.name} model "
                            "(its layers take no `sparse=`): use dense or factorized")
    return task


@dataclass
class RunPaths:
    root: Path

    @property
    def fitness(self) -> Path:
        return self.root / "fitness.csv"

    @property
    def timing(self) -> Path:
        return self.root / "timing.csv"

    @property
    def elite(self) -> Path:
        return self.root / "elite.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint" / "state.pt"

    def clear(self) -> None:
        """Delete the run's own files (nothing else that may share the directory)."""
        for path in (self.fitness, self.timing, self.elite, self.summary, self.checkpoint):
            path.unlink(missing_ok=True)


def run(config: RunConfig, out: Path, resume: bool = False, progress: bool = True,
        restart_changed: bool = False) -> dict:
    """Evolve, logging every generation; returns the summary written to summary.json.

    `resume` continues a run directory (or returns it, finished) only if the same config on the
    same data wrote it. Another one is refused, or with `restart_changed` cleared and run again:
    what the workflow wants after a config or data file was edited.
    """
    paths = RunPaths(Path(out))
    device = resolve_device(config.device)
    check_out_directory(paths.root)
    if paths.fitness.exists() and not resume:
        raise RunError(f"{paths.root} already holds a run: pass --resume to continue it, "
                       "or choose another --out")
    task = build_task(config, device)  # may raise DataError etc. — before anything is written
    identity = {"config_digest": config.digest(), "data_sha256": task.data_sha256}
    digest, resolved = identity["config_digest"], config.to_dict()  # fixed for the run
    finished = _read_summary(paths) if resume and paths.summary.exists() else None
    state = (torch.load(paths.checkpoint, weights_only=True)  # a finished run needs no weights
             if resume and finished is None and paths.checkpoint.exists() else None)
    written = finished if finished is not None else state
    if written is not None and not _written_by(written, config, task):
        if not restart_changed:
            raise RunError(f"{paths.root} holds a run of another config or other data: resume "
                           "with the same config, --preset, --set values and data, or use a new "
                           "--out")
        paths.clear()
        state = None
    elif finished is not None:
        return finished
    ga = GeneticAlgorithm(task.layout, config.ga, config.seed, device,
                          checkpoint=None if state is None else state["ga"])
    if state is not None and "task" in state and hasattr(task, "resume_from"):
        task.resume_from(state["task"])
    fitness_log = CsvLog(paths.fitness, FITNESS_COLUMNS + task.extra_columns)
    timing_log = CsvLog(paths.timing, TIMING_COLUMNS + task.timing_columns)
    previous_wall = 0.0
    if state is not None:
        fitness_log.load_until(ga.generation)
        timing_log.load_until(ga.generation)
        previous_wall = float(timing_log.rows[-1]["wall_seconds"]) if timing_log.rows else 0.0
    paths.root.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter() - previous_wall
    source = source_revision()  # the code this process runs (a resumed run: the resuming code)
    bar = tqdm(total=config.ga.generations, initial=ga.generation - 1, disable=not progress,
               desc=str(paths.root), unit="gen", dynamic_ncols=True,
               mininterval=progress_interval())
    record, last_checkpoint = None, -float("inf")
    while not ga.done:
        # evaluate: the whole population in one batched call (the task chunks it if it must)
        tick = time.perf_counter()
        evaluation = task.evaluate(ga.ask(), ga.generation)
        if device.type == "cuda":
            torch.cuda.synchronize()  # all of the evaluation's work inside eval_seconds
        eval_seconds = time.perf_counter() - tick
        # rank → select → clone → mutate (inside tell)
        record = ga.tell(evaluation.fitness, evaluation.order)
        fitness_log.append({"generation": record.generation, **record.stats,
                            "evaluations": len(evaluation.fitness), **evaluation.columns})
        timing_log.append({"generation": record.generation, "eval_seconds": eval_seconds,
                           "wall_seconds": time.perf_counter() - started, **evaluation.seconds})
        save_genome(paths.elite, record.best_genome, fitness=record.best_fitness,
                    generation=record.generation, individual=record.best_index, config=resolved,
                    config_digest=digest, data_sha256=task.data_sha256)
        if ga.done or time.perf_counter() - last_checkpoint >= CHECKPOINT_SECONDS:
            atomic_torch_save({"ga": ga.state_dict(), **identity, **_task_state(task)},
                              paths.checkpoint)
            last_checkpoint = time.perf_counter()
        bar.set_postfix(best=f"{record.stats['best']:.4g}", mean=f"{record.stats['mean']:.4g}",
                        s_gen=f"{eval_seconds:.2f}", refresh=False)  # update draws it
        bar.update(1)
    bar.close()
    if record is None:  # resumed a run whose last generation was done but summary not written
        record_stats = {k: float(v) for k, v in fitness_log.rows[-1].items()}
    else:
        record_stats = record.stats
    summary = _summary(config, task, device, record_stats, time.perf_counter() - started, source)
    write_json(paths.summary, summary)
    return summary


def _summary(config: RunConfig, task: Task, device: torch.device, final: dict,
             wall_seconds: float, source: str | None) -> dict:
    layout = task.layout
    return {
        "task": config.task.name,
        "encoding": config.encoding.kind,
        "seed": config.seed,
        "preset": config.preset,
        "device": device_description(device),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # the fused kernels and torch's ops round differently (~1e-6): say which were available
        # (the GPU ones serve the transformer only, and `task_details.gpu_kernels` says whether
        # the run's check let them on; the CPU ones the first RL convolutions too)
        "cpu_kernels": device.type == "cpu" and cpu_kernels.library() is not None,
        "cpu_kernel_layout": cpu_kernels.vector_layout() if device.type == "cpu" else None,
        "gpu_kernels": device.type == "cuda" and gpu_kernels.kernels() is not None,
        # the GA's noise from the fused Triton kernel (CUDA; bit-identical to torch's ops on
        # the H100, kernels/gpu_noise.py) or from torch's ops
        "noise_kernel": gpu_noise.usable(torch.empty(0, device=device)),
        "versions": {"neuroevo": neuroevo.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version(),
                     "commit": source},
        "params": {"network": layout.network_weights, "genome": layout.dim,
                   "searched": layout.searched_dim},
        "final": {"best": final["best"], "elite_mean": final["elite_mean"],
                  "generation": config.ga.generations},
        "wall_seconds": wall_seconds,
        "task_details": task.summary(),
        "config_digest": config.digest(),
        "data_sha256": task.data_sha256,
        "config": config.to_dict(),
    }


def device_description(device: torch.device) -> str:
    """What ran a run, for its summary and the report: the GPU's name, or the CPU's model and
    torch's thread count (timings mean little without them)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"cpu ({cpu_model()}, {threads} thread{'' if threads == 1 else 's'})"


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown model"


def _task_state(task: Task) -> dict:
    """The checkpoint's entry for a task whose evaluation path is chosen at run time (the
    language task's kernel check: `resume_state`), so that a resumed process scores the same
    way; nothing for the others."""
    return {"task": task.resume_state()} if hasattr(task, "resume_state") else {}


def _written_by(written: dict, config: RunConfig, task: Task) -> bool:
    """Whether a summary or checkpoint was written by this config on this data. Files from
    before a field existed: the digest with pool sizes still in it is accepted; a language run's
    text is compared with the summary's `task_details.text_sha256`, and where neither hash was
    recorded (an older checkpoint) it counts as other data, so the workflow reruns it."""
    digests = {config.digest(), config.digest(exclude_execution=False)}
    data = written.get("data_sha256", written.get("task_details", {}).get("text_sha256"))
    return written.get("config_digest") in digests and data == task.data_sha256


def check_out_directory(root: Path) -> None:
    """Refuse an --out that is a file or lies under one, before the task is built (minutes of
    data preparation) rather than at the first write (every command that writes a directory)."""
    for path in (root, *root.parents):
        if path.exists():
            if not path.is_dir():
                raise RunError(f"--out {root}: {path} is a file, not a directory: choose another "
                               "--out")
            return


def _read_summary(paths: RunPaths) -> dict:
    return json.loads(paths.summary.read_text())
