"""The paper's networks, built from population-batched layers (see neuroevo.layers)."""
