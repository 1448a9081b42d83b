"""A checkpoint written by an older gcode (tests/data/checkpoint-v1, see its README) resumes on
this one and ends with the parameters of an uninterrupted run of the same config: the on-disk
format, its keys and the state it restores stay compatible."""

import shutil
from pathlib import Path

import pytest

from gcode.runtime import train
from gcode.runtime.checkpoint import read_checkpoint, resume_config

pytestmark = pytest.mark.ray

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "checkpoint-v1"
#: param_checksum of the run that wrote the fixture (main at 348f727, torch 2.13.0 on CPU)
WRITTEN_BY_V1 = [-0.5511676475871354, 2.5516239110729657]


@pytest.mark.parametrize("round_", [3, 6])
def test_a_v1_checkpoint_resumes_to_the_uninterrupted_parameters(ray_pool, tmp_path, round_):
    path = tmp_path / "ck" / f"round-{round_:08d}"
    shutil.copytree(FIXTURE / path.name, path)  # a resume takes a lock beside the checkpoint
    saved = read_checkpoint(path)
    assert saved.round == round_ and saved.tree["version"] == 1
    resumed = train(resume_config(path).replace(**{"checkpoint.dir": None}), pool=ray_pool)
    assert resumed["resumed_from"] == str(path) and resumed["sessions"] == 2
    assert resumed["decoded_jobs"] == 6 and resumed["updates_per_model"] == [3, 3]
    assert resumed["late_results_dropped"] == len(saved.tree["late"])
    fresh_cfg = resume_config(path).replace(**{"checkpoint.dir": None, "checkpoint.resume": None})
    fresh = train(fresh_cfg, pool=ray_pool)
    assert fresh["sessions"] == 1 and fresh["rounds"] == resumed["rounds"]
    assert resumed["param_checksum"] == fresh["param_checksum"] == WRITTEN_BY_V1
