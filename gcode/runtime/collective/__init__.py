"""The collective data plane's mechanics: a torch.distributed group among Ray worker actors
(:mod:`.group`), per-job accumulators (:mod:`.accumulate`), the worker's communication thread
(:mod:`.plane`), replicas kept identical (:mod:`.replicas`) and ZeRO-1 (:mod:`.sharding`). See
docs/COLLECTIVE.md."""

from .accumulate import JobAccumulators
from .group import (
    CollectiveError,
    GroupConfig,
    Rendezvous,
    StaleGeneration,
    form_group,
    leave_group,
    reform_group,
    wait_ready,
)
from .plane import CollectiveConfig, CollectivePlane, accumulate_dtype_for
from .replicas import ReplicaMismatch, checksum

__all__ = ["CollectiveConfig", "CollectiveError", "CollectivePlane", "GroupConfig", "JobAccumulators",
           "Rendezvous", "ReplicaMismatch", "StaleGeneration", "accumulate_dtype_for",
           "checksum", "form_group", "leave_group", "reform_group", "wait_ready"]
