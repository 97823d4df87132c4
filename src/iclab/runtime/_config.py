"""Validated experiment configs (pydantic), presets, and command-line / YAML overrides.

Every experiment has one `ExperimentConfig` subclass whose fields carry a description;
`quick` and `paper` presets are plain dicts of overrides on the defaults.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import IclabError


RESOURCE_FIELDS = {"cpus", "gpus"}  # scheduling requests, not settings: excluded from the config hash


class ExperimentConfig(BaseModel):
    """Base class of every experiment config: unknown fields are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int = Field(0, ge=0, description="Master random seed; every random draw derives from it.")
    cpus: float = Field(1.0, gt=0, description="CPUs one run needs: the Ray backend schedules by it and gives "
                        "the run that many threads. Not part of the run's identity.")
    gpus: float = Field(0.0, ge=0, description="GPUs one run needs (Ray backend). Not part of the run's identity.")

    def hash(self) -> str:
        """A short content hash of the resolved config: the run's identity on disk.

        Resource requests are left out: where a run was scheduled does not change its result,
        so a sweep started locally can finish on a cluster and reuse every finished point."""
        unhashed = RESOURCE_FIELDS | set(getattr(type(self), "UNHASHED", ()))  # e.g. the device of inference runs
        blob = json.dumps(self.model_dump(mode="json", exclude=unhashed), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def format_validation_error(err: ValidationError, where: str) -> str:
    """Pydantic's multi-line report, reduced to one line naming the field."""
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "<config>"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "value_error":  # our validators' own sentence, without pydantic's "Value error, "
        msg = msg.removeprefix("Value error, ")
    n_more = len(err.errors()) - 1
    more = f" (and {n_more} more)" if n_more else ""
    return f"{where}: field '{field}': {msg} (got {first.get('input')!r}){more}; see `iclab show` for valid fields"


def build_config(cls: type[ExperimentConfig], values: dict[str, Any], where: str, saved: bool = False) -> ExperimentConfig:
    try:
        return cls.model_validate(values, context={"saved": saved})
    except ValidationError as err:
        raise IclabError(format_validation_error(err, where)) from None


def parse_value(text: str) -> Any:
    """A command-line value, read as YAML so `10`, `1e-3`, `true`, `[20, 40]` get their natural types."""
    for cast in (int, float):  # YAML 1.1 reads "1e-3" as a string
        try:
            return cast(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["repeats=10", "Ns=[20,40]"]` -> `{"repeats": 10, "Ns": [20, 40]}`."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise IclabError(f"bad override {pair!r}: write it as FIELD=VALUE, e.g. --set repeats=10")
        out[key.strip()] = parse_value(value.strip())
    return out


def load_yaml_overrides(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise IclabError(f"config file {path} does not exist: pass a YAML file of FIELD: VALUE pairs")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise IclabError(f"config file {path} is not valid YAML ({err.__class__.__name__}); fix its syntax") from None
    if not isinstance(data, dict):
        raise IclabError(f"config file {path} must be a mapping of FIELD: VALUE pairs")
    return data
