"""What the convolutional policies' sections share (Atari's and CarRacing's `ConvPolicy`): their
layer types and the checks of their widths and input size."""

from __future__ import annotations

from neuroevo.sections import check_minimums

# the keys `encoding.ranks` may name for a ConvPolicy: every convolution is `conv`, the dense
# layer after the flatten `hidden` (the output layer is always dense)
CONV_LAYER_TYPES = ("conv", "hidden")


def check_widths(config: object, convolutions: int) -> None:
    """A ConvPolicy ModelConfig's checks (its own or CarRacing's): one width per convolution,
    every width ≥ 1."""
    if len(config.channels) != convolutions:
        raise ValueError(f"model.channels needs {convolutions} entries (one per convolution), "
                         f"got {len(config.channels)}")
    check_minimums(config, (("channels", 1, ""), ("hidden", 1, "")), name="model")


def smallest_input(kernels: tuple[tuple[int, int], ...]) -> int:
    """The least height (and width) that unpadded `kernels` (kernel, stride) still reduce to one
    pixel: walking back from the last layer, an output of n needs (n − 1)·stride + kernel."""
    size = 1
    for kernel, stride in reversed(kernels):
        size = (size - 1) * stride + kernel
    return size
