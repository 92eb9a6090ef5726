"""Load training and evaluation data from a ``tasks://`` URI or a local file in TRL's dataset formats.

Files (``.jsonl``, ``.json``, ``.parquet``) are read with the HF ``datasets`` library into memory,
with its cache in a temporary folder that is removed afterwards, so nothing is written next to the
user's data or into ``~/.cache``. Accepted row formats (https://huggingface.co/docs/trl/dataset_formats):

- ``prompt`` + ``completion``: strings (standard) or message lists (conversational);
- ``prompt`` + ``answer``: prompt-only data for RL with a reference answer (completion = answer);
- ``messages``: a conversation; the last assistant message is the completion, the ones before it
  the prompt;
- ``prompt`` + ``chosen`` + ``rejected`` (``load_preference_examples``), strings or message lists;
  ``chosen`` + ``rejected`` message lists alone use their shared leading messages as the prompt.

An optional ``answer`` column becomes ``Example.answer`` (converted to ``str``). For conversational
rows ``prompt_messages`` keeps the messages; ``prompt`` then holds the last prompt message's text.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignrl.errors import UserError
from alignrl.tasks import TASKS, Example, parse_task_uri
from alignrl.tasks.base import SCHEME

BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
EXAMPLE_FORMATS = "prompt+completion, prompt+answer or messages"
PREFERENCE_FORMATS = "prompt+chosen+rejected, or chosen+rejected as message lists"


@dataclass(frozen=True, slots=True)
class PreferenceExample:
    """One prompt with a preferred and a dispreferred completion (TRL preference format)."""

    prompt: str
    """Prompt text; for conversational data, the last prompt message's text."""
    chosen: str
    """Preferred completion text (for message lists, the last message's text)."""
    rejected: str
    """Dispreferred completion text (for message lists, the last message's text)."""
    prompt_messages: tuple[dict[str, Any], ...] | None = None
    """Conversational prompt messages, else None."""
    chosen_messages: tuple[dict[str, Any], ...] | None = None
    """Conversational chosen completion messages, else None."""
    rejected_messages: tuple[dict[str, Any], ...] | None = None
    """Conversational rejected completion messages, else None."""


def task_of(source: str) -> str | None:
    """The task name of a ``tasks://`` source (its verifier is ``TASKS.get(name).verify``), else None."""
    if not source.startswith(SCHEME):
        return None
    return parse_task_uri(source)[0]


def load_examples(source: str, *, key: str = "data.train") -> list[Example]:
    """Examples from a task URI or a local file; ``key`` is the recipe key named in errors."""
    if source.startswith(SCHEME):
        name, params = parse_task_uri(source)
        return TASKS.get(name)(params)
    rows, path = _read_rows(source, key)
    columns = set(rows[0]) if rows else set()
    if "messages" in columns:
        return [_from_messages(row, i, key, path) for i, row in enumerate(rows)]
    if "prompt" in columns and columns & {"completion", "answer"}:
        return [_from_prompt(row, i, key, path) for i, row in enumerate(rows)]
    hint = " (this is a preference file: chosen/rejected)" if {"chosen", "rejected"} <= columns else ""
    raise _columns_error(key, path, columns, EXAMPLE_FORMATS + hint)


def load_preference_examples(source: str, *, key: str = "data.train") -> list[PreferenceExample]:
    """Preference pairs from a local file in TRL's preference format, or synthetic pairs from a ``prefs://`` URI
    (``data.synthetic_preferences``); a ``tasks://`` URI gives examples, not pairs."""
    if source.startswith("prefs://"):
        from alignrl.data.synthetic_preferences import synthetic_preferences

        return synthetic_preferences(source, key)
    if source.startswith(SCHEME):
        raise UserError(f"{key}: {source!r} is a task; tasks give examples, not preference pairs")
    rows, path = _read_rows(source, key)
    columns = set(rows[0]) if rows else set()
    if not {"chosen", "rejected"} <= columns:
        raise _columns_error(key, path, columns, PREFERENCE_FORMATS)
    return [_preference(row, i, key, path) for i, row in enumerate(rows)]


# --- reading ------------------------------------------------------------------------------------


def _read_rows(source: str, key: str) -> tuple[list[dict[str, Any]], Path]:
    """All rows of a local data file as dicts; missing, unsupported or unreadable files are ``UserError``."""
    if "://" in source:
        raise UserError(f"{key}: unsupported source {source!r}; use {SCHEME}NAME?... or a local file path")
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"{key}: data file not found: {path}")
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise UserError(f"{key}: {path} has an unsupported extension; use one of {', '.join(BUILDERS)}")
    if path.stat().st_size == 0:
        raise UserError(f"{key}: {path} is empty")
    if builder == "json":
        _check_utf8(path, key)
    import datasets  # heavy; only needed for files

    bars_were_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # "Generating train split" bars are noise for local files
    with tempfile.TemporaryDirectory(prefix="alignrl-datasets-") as cache_dir:
        try:
            ds = datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache_dir, keep_in_memory=True
            )
            rows = ds.to_list()
        except Exception as err:  # the library raises many types for a malformed file
            raise UserError(f"{key}: cannot read {path}: {type(err).__name__}: {err}") from err
        finally:
            if not bars_were_off:
                datasets.enable_progress_bars()
    if not rows:
        raise UserError(f"{key}: {path} has no rows")
    return rows, path


def _check_utf8(path: Path, key: str) -> None:
    """JSON lines must be UTF-8: name the line and byte of the first that is not (pyarrow would only fail later,
    deep inside, when the text is read back)."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                byte = f"{line[err.start]:#04x}"
                raise UserError(f"{key}: cannot read {path}: line {number} is not UTF-8 (byte {byte} at column "
                                f"{err.start + 1}); re-save the file as UTF-8") from None


def _columns_error(key: str, path: Path, found: set[str], expected: str) -> UserError:
    """The error for a file whose columns match no accepted format."""
    return UserError(f"{key}: {path} has columns {sorted(found)}; expected {expected}")


# --- row conversion -----------------------------------------------------------------------------


def _from_prompt(row: dict[str, Any], i: int, key: str, path: Path) -> Example:
    """An example from a prompt+completion or prompt+answer row (standard or conversational)."""
    answer = _answer(row)
    completion = row.get("completion")
    if completion is None:
        completion = answer
    prompt_messages = None
    if isinstance(row["prompt"], list):
        prompt_messages = _messages(row["prompt"], i, key, path, "prompt")
    if isinstance(completion, list):
        completion = _last_text(_messages(completion, i, key, path, "completion"), i, key, path, "completion")
    prompt = _last_text(prompt_messages, i, key, path, "prompt") if prompt_messages else row["prompt"]
    _check_text(prompt, i, key, path, "prompt")
    _check_text(completion, i, key, path, "completion")
    return Example(prompt=prompt, completion=completion, answer=answer, prompt_messages=prompt_messages)


def _from_messages(row: dict[str, Any], i: int, key: str, path: Path) -> Example:
    """An example from a ``messages`` row: the last assistant message is the completion."""
    messages = _messages(row["messages"], i, key, path, "messages")
    last = max((j for j, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        raise UserError(f"{key}: {path} row {i}: 'messages' has no assistant message to learn")
    completion = _last_text(messages[last:last + 1], i, key, path, "messages")
    prompt_messages = messages[:last]
    prompt = _last_text(prompt_messages, i, key, path, "messages") if prompt_messages else ""
    return Example(prompt=prompt, completion=completion, answer=_answer(row), prompt_messages=prompt_messages)


def _preference(row: dict[str, Any], i: int, key: str, path: Path) -> PreferenceExample:
    """A preference pair from a row with chosen/rejected and an explicit or implicit prompt."""
    chosen, rejected, prompt = row["chosen"], row["rejected"], row.get("prompt")
    if isinstance(chosen, list) and isinstance(rejected, list):
        chosen_m = _messages(chosen, i, key, path, "chosen")
        rejected_m = _messages(rejected, i, key, path, "rejected")
        if prompt is None:  # implicit prompt: the leading messages both conversations share
            prompt = _shared_prefix(chosen_m, rejected_m)
            chosen_m, rejected_m = chosen_m[len(prompt):], rejected_m[len(prompt):]
        prompt_m = _messages(prompt, i, key, path, "prompt") if isinstance(prompt, list) else None
        return PreferenceExample(
            prompt=_last_text(prompt_m, i, key, path, "prompt") if prompt_m else (prompt or ""),
            chosen=_last_text(chosen_m, i, key, path, "chosen"),
            rejected=_last_text(rejected_m, i, key, path, "rejected"),
            prompt_messages=prompt_m,
            chosen_messages=chosen_m,
            rejected_messages=rejected_m,
        )
    if prompt is None:
        raise UserError(f"{key}: {path} row {i}: string chosen/rejected need a 'prompt' column")
    for name, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        _check_text(value, i, key, path, name)
    return PreferenceExample(prompt=prompt, chosen=chosen, rejected=rejected)


def _shared_prefix(a: tuple[dict, ...], b: tuple[dict, ...]) -> list[dict]:
    """The leading messages ``a`` and ``b`` have in common, leaving at least one message in each."""
    n = 0
    while n < min(len(a), len(b)) - 1 and a[n] == b[n]:
        n += 1
    return list(a[:n])


def _answer(row: dict[str, Any]) -> str | None:
    """The row's ``answer`` column as text, or None if it has none."""
    answer = row.get("answer")
    return None if answer is None else str(answer)


def _messages(value: Any, i: int, key: str, path: Path, column: str) -> tuple[dict[str, Any], ...]:
    """Check a conversational column is a list of ``{role, content}`` dicts; return it as a tuple."""
    ok = isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
    if not ok:
        raise UserError(f"{key}: {path} row {i}: {column!r} must be a list of {{role, content}} messages")
    return tuple(value)


def _last_text(messages: tuple[dict[str, Any], ...] | list, i: int, key: str, path: Path, column: str) -> str:
    """The text content of the last message."""
    if not messages:
        raise UserError(f"{key}: {path} row {i}: {column!r} has no messages")
    content = messages[-1]["content"]
    _check_text(content, i, key, path, column)
    return content


def _check_text(value: Any, i: int, key: str, path: Path, column: str) -> None:
    """Raise ``UserError`` unless ``value`` is a string."""
    if not isinstance(value, str):
        raise UserError(f"{key}: {path} row {i}: {column!r} must be a string, got {type(value).__name__}")
