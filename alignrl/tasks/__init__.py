"""Synthetic tasks with verifiable answers, named by URI: ``tasks://arithmetic?digits=2&n=500``.

The import list below registers every task in ``TASKS``; it is the only side-effect import here.
"""

from alignrl.tasks import arithmetic, reverse, sort  # noqa: F401  (registers the tasks)
from alignrl.tasks.base import (
    TASKS,
    Example,
    SamplingParams,
    Task,
    examples_from_uri,
    parse_task_uri,
    reward_for,
)

__all__ = [
    "TASKS",
    "Example",
    "SamplingParams",
    "Task",
    "examples_from_uri",
    "parse_task_uri",
    "reward_for",
]
