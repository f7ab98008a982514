"""Which batch size? The gradient noise scale, steps-to-result, the critical batch size
and time-to-target on this device.

- ``gradient_noise``, ``two_batch_estimate``, ``ema``, ``noise_scale_ema``,
  ``adascale_gain``: the noise scale B_simple = tr Σ / |G|² (McCandlish et al. 2018,
  arXiv:1812.06162); ``jaxgd.sweep(..., measure=["noise_scale"])`` records it per epoch.
- ``steps_to_result``, ``fit_critical_batch``, ``seconds_per_update``, ``time_to_target``:
  Shallue et al.'s steps-to-result (2018, arXiv:1811.03600), the fit S(B) = S_min(1 +
  B_crit/B), and the batch size that reaches a target soonest here.
- ``batch_size_study``: all of it on one problem, with a report (``jaxgd science``).
"""

from . import plots as plots
from .noise import NoiseScale as NoiseScale
from .noise import adascale_gain as adascale_gain
from .noise import ema as ema
from .noise import gradient_noise as gradient_noise
from .noise import noise_scale_ema as noise_scale_ema
from .noise import two_batch_estimate as two_batch_estimate
from .steps import CriticalBatchFit as CriticalBatchFit
from .steps import StepsToResult as StepsToResult
from .steps import TimeToTarget as TimeToTarget
from .steps import fit_critical_batch as fit_critical_batch
from .steps import seconds_per_update as seconds_per_update
from .steps import steps_to_result as steps_to_result
from .steps import time_to_target as time_to_target
from .study import StudySettings as StudySettings
from .study import batch_size_study as batch_size_study

__all__ = [
    "CriticalBatchFit",
    "NoiseScale",
    "StepsToResult",
    "StudySettings",
    "TimeToTarget",
    "adascale_gain",
    "batch_size_study",
    "ema",
    "fit_critical_batch",
    "gradient_noise",
    "noise_scale_ema",
    "plots",
    "seconds_per_update",
    "steps_to_result",
    "time_to_target",
    "two_batch_estimate",
]
