"""A synthetic world whose true answer distributions are known, a tiny model trained on it, and
post-training that breaks its calibration: the reference paper's findings, reproduced on a CPU.

See :mod:`recal.synthetic.world`, :mod:`recal.synthetic.model`, :mod:`recal.synthetic.posttrain`
and :func:`recal.synthetic.experiment.run_synthetic`.
"""

from recal.synthetic.experiment import SynthConfig, SynthReport, SynthRow, run_synthetic
from recal.synthetic.world import World, WorldConfig, make_world

__all__ = ["SynthConfig", "SynthReport", "SynthRow", "World", "WorldConfig", "make_world",
           "run_synthetic"]
