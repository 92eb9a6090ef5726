"""Data sources for the loops: ``tasks://`` URIs and local files in TRL's dataset formats."""

from alignrl.data.sources import (
    PreferenceExample,
    load_examples,
    load_preference_examples,
    task_of,
)
from alignrl.tasks.base import Example

__all__ = ["Example", "PreferenceExample", "load_examples", "load_preference_examples", "task_of"]
