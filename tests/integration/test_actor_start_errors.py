"""An actor whose constructor fails is reported with the constructor's own error, in one line, not with Ray's first
line (which says only that the creation task failed)."""

import pytest

from alignrl.actors.cluster import ray_session
from alignrl.errors import UserError

pytestmark = pytest.mark.integration


def test_a_failed_start_names_the_constructors_error(tmp_path):
    from alignrl.actors.scorer import Scorer

    with ray_session(None, num_cpus=1):
        with pytest.raises(UserError) as err:
            Scorer("teacher", [str(tmp_path / "no" / "such" / "teacher")], cpus=0)
    message = str(err.value)
    assert "scorer 'teacher' died during start: its start failed: UserError: " in message, message
    assert "no/such/teacher" in message and "Traceback" not in message and "\n" not in message, message
