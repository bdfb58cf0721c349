"""neuroevo: a population-batched Deep-GA with low-rank factorized encodings.

Reproduces Garbus & Pollack (2025), "Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution": genomes are seed chains, every weight tensor carries a leading population axis,
and a factorized layer is searched as its factors A and B (W = A·B) rather than as W itself.
"""

__version__ = "0.1.0"
