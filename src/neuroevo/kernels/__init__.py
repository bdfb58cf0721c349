"""Hand-written kernels for hot spots where torch's generic ops are far from the hardware."""
