"""The plane actors of this folder (plane_actor.py) on the session's one Ray (``local_ray``)."""

import pytest


@pytest.fixture(scope="session")
def plane_ray(local_ray):
    import plane_actor
    local_ray.cloudpickle.register_pickle_by_value(plane_actor)  # workers cannot import tests/
    return local_ray
