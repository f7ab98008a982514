"""jaxgd: many gradient-descent configurations trained in one compiled JAX program."""

from . import distributed as distributed
from . import optuna as optuna
from . import plots as plots
from . import problems as problems
from . import report as report
from . import science as science
from .core.compile import compile_count as compile_count
from .data import BatchPlan as BatchPlan
from .data import HostData as HostData
from .data import split as split
from .errors import InputError as InputError
from .optimizers import Optimizer as Optimizer
from .optimizers import optimizer as optimizer
from .options import SweepOptions as SweepOptions
from .problem import Problem as Problem
from .problem import batch_gradient as batch_gradient
from .problem import batch_loss as batch_loss
from .problem import per_example_gradients as per_example_gradients
from .results import SweepResult as SweepResult
from .run.callbacks import EarlyStopping as EarlyStopping
from .run.callbacks import Progress as Progress
from .run.callbacks import SuccessiveHalving as SuccessiveHalving
from .run.report import Callback as Callback
from .run.report import ChunkReport as ChunkReport
from .schedules import BatchSchedule as BatchSchedule
from .schedules import batch_schedule as batch_schedule
from .schedules import increase_batch_size as increase_batch_size
from .space import Space as Space
from .space import choice as choice
from .space import grid as grid
from .space import loguniform as loguniform
from .space import quasi_random as quasi_random
from .space import sample as sample
from .space import uniform as uniform
from .sweep import sweep as sweep

__version__ = "0.1.0"

__all__ = [
    "BatchPlan",
    "BatchSchedule",
    "Callback",
    "ChunkReport",
    "EarlyStopping",
    "HostData",
    "InputError",
    "Optimizer",
    "Problem",
    "Progress",
    "Space",
    "SuccessiveHalving",
    "SweepOptions",
    "SweepResult",
    "batch_gradient",
    "batch_loss",
    "batch_schedule",
    "choice",
    "compile_count",
    "distributed",
    "grid",
    "increase_batch_size",
    "loguniform",
    "optimizer",
    "optuna",
    "per_example_gradients",
    "plots",
    "problems",
    "quasi_random",
    "report",
    "sample",
    "science",
    "split",
    "sweep",
    "uniform",
]
