"""Checkpoints of a live run: capture and restore of the run's state (:mod:`.state`), the files
and their verification (:mod:`.files`), the checks of their content (:mod:`.checks`) and one
run per directory (:mod:`.lock`). The names below are the checkpoint API."""

from .state import (
    ARRAYS_FILE,
    FORMAT,
    MANIFEST_FILE,
    SAFE_OVERRIDES,
    STATE_FILE,
    VERSION,
    Checkpoint,
    Checkpointer,
    CheckpointError,
    canonical_json,
    capture,
    check_resume_config,
    checkpoints_in,
    continue_from,
    probe_writable,
    read_checkpoint,
    resolve,
    restore_buffers,
    restore_coordinator,
    restore_scheme_and_policy,
    resume_config,
    sha256_file,
    write_checkpoint,
    write_npz,
)

__all__ = ["ARRAYS_FILE", "FORMAT", "MANIFEST_FILE", "SAFE_OVERRIDES", "STATE_FILE", "VERSION",
           "Checkpoint", "CheckpointError", "Checkpointer", "canonical_json", "capture",
           "check_resume_config", "checkpoints_in", "continue_from", "probe_writable",
           "read_checkpoint", "resolve", "restore_buffers", "restore_coordinator",
           "restore_scheme_and_policy", "resume_config", "sha256_file", "write_checkpoint",
           "write_npz"]
