"""Shared fixtures: a tiny TinyStories config on the shipped corpus, fixed seeds, tmp run dirs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from neuroevo.genome import initial_weights
from neuroevo.kernels import cpu as cpu_kernels
from neuroevo.kernels import gpu as gpu_kernels
from neuroevo.models import transformer as transformer_module
from neuroevo.models.transformer import Transformer
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.language import ModelConfig

if not torch.cuda.is_available():
    # The Triton kernels' tests (test_gpu_kernels.py) run through Triton's interpreter on CPU. It
    # is chosen when a kernel is defined, so it must be set before anything imports them.
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
QUICKSTORIES = REPO / "data" / "quickstories.txt"
N_SMALL = 300  # stories in the small test corpus (the first of the shipped corpus)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (the README's test command): one worker per core this process may use. xdist's
    own count sees every core of the host, where a container's CPU quota allows fewer, and
    workers past the quota would only contend (each also runs Snakemake and C kernels)."""
    from neuroevo.tasks.rollout import available_cores

    return available_cores()


@pytest.fixture(scope="module")
def quickstories() -> list[str]:
    """The shipped story corpus, one story per line."""
    return QUICKSTORIES.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def small_text(tmp_path_factory: pytest.TempPathFactory, quickstories: list[str]) -> Path:
    """A text file of the corpus's first N_SMALL stories."""
    path = tmp_path_factory.mktemp("text") / "small.txt"
    path.write_text("\n".join(quickstories[:N_SMALL]) + "\n", encoding="utf-8")
    return path


TINY_LM_OVERRIDES = [
    "task.text=data/quickstories.txt", "task.n_stories=300", "task.vocab_size=512",
    "task.n_sequences=8", "task.max_len=24", "ga.population=8", "ga.elites=2",
    "ga.generations=3", "model.n_blocks=1",
]


@pytest.fixture(autouse=True)
def _repo_cwd_and_threads(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """Run every test from the repo root (configs use repo-relative paths), with a private
    tokenizer cache so tests never depend on a developer's data/cache."""
    monkeypatch.chdir(REPO)
    cache = tmp_path_factory.getbasetemp() / "data-cache"
    monkeypatch.setenv("NEUROEVO_TEST_CACHE", str(cache))
    torch.manual_seed(0)


@pytest.fixture
def tiny_lm_overrides(tmp_path_factory) -> list[str]:
    """--set overrides that shrink a TinyStories config to a seconds-long run."""
    cache = Path(os.environ["NEUROEVO_TEST_CACHE"])
    return TINY_LM_OVERRIDES + [f"task.cache_dir={cache}"]


needs_cpu_kernels = pytest.mark.skipif(cpu_kernels.library() is None,
                                       reason="fused CPU kernels unavailable (no C compiler)")


def _triton_skip_reason() -> str | None:
    """Why the Triton kernels cannot run here, or None: they need Triton, and on a machine
    without a GPU its interpreter, which works with numpy 2 from Triton 3.9 on."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed (pip install -e '.[kernel-tests]')"
    version = tuple(int(part) for part in importlib.metadata.version("triton").split(".")[:2])
    if not torch.cuda.is_available() and version < (3, 9):
        return "Triton's interpreter needs Triton >= 3.9 (pip install -e '.[kernel-tests]')"
    return None


needs_triton = pytest.mark.skipif(_triton_skip_reason() is not None,
                                  reason=str(_triton_skip_reason()))


# The encodings the fused kernels are checked under (tests/test_cpu_kernels.py, test_gpu_kernels.py)
KERNEL_ENCODINGS = {"dense": EncodingConfig("dense"),
                    "factorized": EncodingConfig("factorized", 4, {"embedding": 4}),
                    "rank1": EncodingConfig("factorized", 1, {"embedding": 1})}


def perturbed_transformer(encoding: EncodingConfig, cfg: ModelConfig, vocab: int = 50,
                          pop: int = 3, device: torch.device = torch.device("cpu")):
    """A transformer and its population's weights (views), initialised and then shifted by
    0.3·N(0, 1) (seed 7), so that factor products and scores leave the init's narrow range:
    inputs on which a kernel's mistakes show."""
    model = Transformer(cfg, encoding, vocab=vocab)
    theta = initial_weights(model.layout, list(range(pop)), device)
    theta += 0.3 * torch.randn(theta.shape, generator=torch.Generator().manual_seed(7)).to(device)
    return model, model.layout.views(theta)


@pytest.fixture
def kernels_served(monkeypatch) -> list:
    """What the transformer's kernel choice returned, call by call: the C kernels under no_grad,
    None under autograd. Without this, both sides of a comparison could be torch's ops (kernels
    silently off) and the comparison would still hold."""
    served, choose = [], transformer_module._fused_kernels

    def recording(x: torch.Tensor):
        served.append(choose(x))
        return served[-1]

    monkeypatch.setattr(transformer_module, "_fused_kernels", recording)
    return served


def interrupt_at_checkpoint(monkeypatch: pytest.MonkeyPatch, n: int) -> Callable[[], None]:
    """Make runs checkpoint after every generation and stop with KeyboardInterrupt (Ctrl-C: exit
    130) at the n-th checkpoint, before it is written; returns what puts the real checkpoint
    writer back, for the resume."""
    import neuroevo.run

    monkeypatch.setattr(neuroevo.run, "CHECKPOINT_SECONDS", 0.0)
    save, calls = neuroevo.run.atomic_torch_save, []

    def interrupted(*args, **kwargs) -> None:
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        save(*args, **kwargs)

    monkeypatch.setattr(neuroevo.run, "atomic_torch_save", interrupted)
    return lambda: monkeypatch.setattr(neuroevo.run, "atomic_torch_save", save)


def record_triton_launches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the Triton kernels launched from now on, in order (every launch passes
    through gpu._launch), so that a test can tell the kernels ran, not torch's ops in their
    place."""
    launched, launch = [], gpu_kernels._launch

    def recording(kernel, *args, **kwargs):
        launched.append(kernel.__name__)
        return launch(kernel, *args, **kwargs)

    monkeypatch.setattr(gpu_kernels, "_launch", recording)
    return launched
