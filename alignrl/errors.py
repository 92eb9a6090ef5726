"""The one exception type for problems the user can fix (bad recipe, missing model, ...).

The CLI prints its message and exits with code 2, without a traceback. The message names the key,
file or worker at fault and says how to fix it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input; ``str(err)`` is the whole message shown to the user."""

    exit_code = 2
