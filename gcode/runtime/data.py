"""What workers and the coordinator agree on without talking: job batches and the work spec.

Every worker builds the dataset itself (``dataset_fn``) and derives job t's batch from (seed, t)
and the dataset's length alone, so no samples or indices travel with the tasks and a restarted
actor rebuilds the same data.
A job's chunk ranges ([start, stop) of each chunk id inside its batch) travel once per job with
its parameters (they can change between jobs when a switching scheme changes codes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: stream id mixed into the job-batch seed, so batches never share a stream with model init
_BATCH_STREAM = 0x6A0B


def job_indices(seed: int, job: int, batch_size: int, num_samples: int) -> np.ndarray:
    """Sample indices of job ``job``'s batch: ``batch_size`` distinct samples, fixed by (seed, job)."""
    if not 1 <= batch_size <= num_samples:
        raise ValueError(f"batch_size must be in [1, {num_samples}], got {batch_size}")
    rng = np.random.default_rng([int(seed), _BATCH_STREAM, int(job)])
    if batch_size == num_samples:
        return rng.permutation(num_samples)
    return rng.choice(num_samples, size=batch_size, replace=False)


def model_seed(seed: int, model: int) -> int:
    """Initialisation seed of concurrent model ``model`` (distinct, reproducible per run seed)."""
    return int(np.random.SeedSequence([int(seed), int(model)]).generate_state(1)[0] & 0x7FFFFFFF)


def bounds_of(fractions: np.ndarray, batch_size: int, groups: tuple[int, ...] | None = None,
              block: int = 0) -> tuple[tuple[int, int], ...]:
    """Chunk id -> [start, stop) inside a job batch (balanced per chunk group when not divisible);
    with ``block`` > 0 (``exact_blocks``) every chunk is whole blocks of that many samples."""
    from ..codes import chunk_boundaries
    return tuple((s.start, s.stop) for s in chunk_boundaries(fractions, batch_size, groups,
                                                              max(1, block)))


def message_dtype(scheme, exact_blocks: int = 0) -> np.dtype:
    """The dtype of the workers' messages: float64 in the canonical-sum mode (``exact_blocks``
    > 0), else the scheme's (float64 only where a code needs it)."""
    return np.dtype(np.float64) if exact_blocks else np.dtype(scheme.message_dtype)


@dataclass(frozen=True)
class WorkSpec:
    """Everything a worker actor needs to compute any task of the run (sent once per session):
    the user's workload (the worker calls its ``dataset_fn`` itself; no data is shipped)."""

    workload: Any                # gcode.train.Workload
    seed: int = 0
    batch_size: int = 1
    num_samples: int = 1
    num_params: int = 0
    use_gpu: bool = False        # place the model and batches on the actor's GPU when it has one
    prefetch: bool = False       # read each next batch on a background thread (worker.py)
    #: the coordinator's models' buffers (gcode.train.workload.model_buffers): job t runs with
    #: buffers[t mod len(buffers)], one dict of CPU tensors per model (or one for all)
    buffers: tuple = ()
    #: the run's codes weigh replicas of a chunk with coefficients other than 1 (cyclic, group
    #: codes): GPU workers use deterministic algorithms (gcode.train.flat.deterministic_algorithms)
    deterministic: bool = False
