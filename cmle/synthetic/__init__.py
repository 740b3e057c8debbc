"""Synthetic AEP data: the CMLE simulation model, vectorised, with its oracle.

* :mod:`cmle.synthetic.model` — event types, rates, deltas, dependencies (legacy and default);
* :mod:`cmle.synthetic.simulate` — :func:`generate`, the vectorised generator;
* :mod:`cmle.synthetic.reference` — the same model one user at a time (baseline, tests);
* :mod:`cmle.synthetic.xdm` — the events and profiles datasets as Arrow tables;
* :mod:`cmle.synthetic.oracle` — the latent propensity side table.
"""

from cmle.synthetic.oracle import latent_propensity_at, oracle_path
from cmle.synthetic.simulate import SyntheticData, generate

__all__ = ["SyntheticData", "generate", "latent_propensity_at", "oracle_path"]
