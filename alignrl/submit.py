"""``alignrl submit``: run a recipe on a Ray cluster through the Ray Jobs API.

The recipe is loaded and validated here first (a bad recipe fails on the laptop, not on the cluster),
resolved with its overrides into one file, and shipped as the job's ``working_dir`` together with nothing
else. Paths in the recipe (model folders, data files, anchors, ``output_dir``) are made absolute, so
the cluster must see them at the same place (a shared filesystem, or the same paths on every node).
The job runs ``python -m alignrl run recipe.yaml ray.address=auto``; its logs stream here and the
command exits with the job's exit status (0 on success, the driver's code on failure).
"""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from alignrl.errors import UserError

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def _absolute(value: str | None) -> str | None:
    if value is None or value.startswith("tasks://") or Path(value).is_absolute():
        return value
    return str(Path(value).absolute())


def resolved_recipe(recipe: str, overrides: list[str]) -> dict[str, Any]:
    """The validated recipe as plain data, its local paths made absolute, set to join the job's cluster."""
    from alignrl.config import load_recipe, recipe_to_dict

    cfg = load_recipe(recipe, overrides)
    data = recipe_to_dict(cfg)
    data["output_dir"] = _absolute(data["output_dir"])
    data["policy"]["path"] = _absolute(data["policy"]["path"])
    data["data"]["train"] = _absolute(data["data"]["train"])
    data["data"]["eval"] = _absolute(data["data"]["eval"])
    for anchor in data.get("anchors", []):
        anchor["path"] = _absolute(anchor["path"])
        anchor["paths"] = [_absolute(p) for p in anchor["paths"]]
    data["ray"] = {**data["ray"], "address": "auto", "num_cpus": None}
    if data["policy"]["tiny"] is None:
        data["policy"].pop("tiny")
    else:
        data["policy"].pop("path")
    return data


def _submit_with_retry(client, entrypoint: str, working_dir: str, metadata: dict, timeout_s: float = 120.0) -> str:
    """Submit; a head that has just started answers "no available agent" for a few seconds, so retry."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": working_dir}, metadata=metadata)
        except RuntimeError as err:
            if "No available agent" not in str(err) or time.monotonic() > deadline:
                raise UserError(f"the cluster refused the job: {str(err).splitlines()[0]}") from None
            time.sleep(2.0)


def submit(recipe: str, overrides: list[str], *, address: str, overwrite: bool = False, wait: bool = True,
           poll_s: float = 1.0, out=None) -> int:
    """Submit, stream the logs until the job ends, return its exit status (or 0 right away if not ``wait``)."""
    out = out or sys.stdout
    from ray.job_submission import JobSubmissionClient

    data = resolved_recipe(recipe, overrides)
    try:
        client = JobSubmissionClient(address)
    except Exception as err:  # noqa: BLE001 - connection problems come in many exception types
        raise UserError(f"--address {address}: cannot reach the Ray Jobs API ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}); start the head with `ray start --head "
                        "--dashboard-host 0.0.0.0` and pass http://HEAD:8265") from None
    with tempfile.TemporaryDirectory(prefix="alignrl-submit-") as tmp:
        Path(tmp, "recipe.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        flags = " --overwrite" if overwrite else ""
        entrypoint = f"python -m alignrl run{flags} --no-progress recipe.yaml"
        job_id = _submit_with_retry(client, entrypoint, tmp, {"alignrl_recipe": str(recipe), "name": str(data["name"])})
    print(f"submitted job {job_id} to {address}: {shlex.quote(str(recipe))} -> {data['output_dir']}/{data['name']}",
          file=out, flush=True)
    if not wait:
        return 0
    shown = 0
    while True:
        status = str(client.get_job_status(job_id)).rsplit(".", 1)[-1]
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            out.write(logs[shown:])
            out.flush()
            shown = len(logs)
        if status in TERMINAL:
            break
        time.sleep(poll_s)
    info = client.get_job_info(job_id)
    code = getattr(info, "driver_exit_code", None)
    print(f"job {job_id} {status.lower()}" + (f" (exit code {code})" if code is not None else ""), file=out, flush=True)
    if status == "SUCCEEDED":
        return 0
    return int(code) if code else 1
