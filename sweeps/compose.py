"""Compose and validate configs with Hydra's compose API (the same grammar as the CLI).

All of a sweep's cells are composed in one Hydra context and validated before any is launched,
so one bad cell stops the sweep with its cell and key named, and nothing runs.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweeps.configstore import register
from sweeps.override_meaning import check_effect, check_keys
from trainer.config import Config, valid_keys
from trainer.knobs import ConfigError
from trainer.provenance import REPO_ROOT
from trainer.secrets import redact_value
from trainer.validation import validate


def conf_dir() -> Path:
    return Path(os.environ.get("GRPOLAB_CONF_DIR", REPO_ROOT / "conf")).resolve()


@contextmanager
def hydra_context():
    register()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        yield


def is_group(key: str) -> bool:
    """Whether an override's key names a config group (``algorithm``, ``algorithm/features``)."""
    return (conf_dir() / key).is_dir()


def compose_dict(overrides: list[str]) -> DictConfig:
    """Compose inside an active ``hydra_context``; errors become ``ConfigError`` naming the override.
    Every override's key is checked against the schema first (``sweeps.override_meaning``)."""
    errors = check_keys(overrides, is_group)
    if errors:
        raise ConfigError("\n".join(errors))
    try:
        return hydra_compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(explain_error(overrides, e)) from None


def explain_error(overrides: list[str], e: BaseException) -> str:
    """One line naming the key, the value and what is valid, from Hydra's or OmegaConf's error: a
    value the schema cannot take (``tracker.mode=sometimes``), an option a config group lacks
    (``algorithm=foo``); anything else as Hydra says it, with its causes."""
    chain, seen = [], set()
    cause = e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    given = {o.split("=", 1)[0].lstrip("+~"): o.split("=", 1)[1] for o in overrides if "=" in o}
    for ex in chain:
        key = getattr(ex, "full_key", None)
        reason = str(getattr(ex, "msg", "") or "").strip().splitlines()
        if key and reason:
            value = given.get(key)
            value = None if value is None else redact_value(key, value)  # an error line is a console line
            return f"{key}={value}: {reason[0]}" if value is not None else f"{key}: {reason[0]}"
    missing = re.search(r"Could not (?:find|load) '([^']+)/([^'/]*)'", str(e))
    if missing:
        group, option = missing.groups()
        return f"{group}={option}: no such option in conf/{group}/; available: {', '.join(group_options(group))}"
    parts, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e).strip()
        if text and text not in parts and "$VALUE" not in text:
            parts.append(text)
        e = e.__cause__ or e.__context__
    msg = "\n".join(parts)
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if is_group(key):  # a group's options, not keys (a group is no key of the config)
            if f"'{key}'" in msg:
                msg += f"\noptions of {key}: {', '.join(group_options(key))}"
            continue
        if f"'{key}'" in msg or f"Key '{key.rsplit('.', 1)[-1]}' not in" in msg:
            keys = valid_keys(key)
            if keys and key.rsplit(".", 1)[-1] not in keys:
                msg += f"\nvalid keys under {key.rsplit('.', 1)[0]}: {', '.join(keys)}"
    return MULTIRUN.sub(MULTIRUN_INSTEAD, msg)


# Hydra's advice for a comma in a value; grpolab's multirun is its own command
MULTIRUN = re.compile(r"add --multirun to your command line")
MULTIRUN_INSTEAD = "run grpolab sweep with the same overrides (train, config and tune compose one config)"


def group_options(group: str) -> list[str]:
    """The options of config group ``group`` (its YAML files under conf/)."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def to_config(cfg: DictConfig) -> Config:
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:  # e.g. a ??? value left unset
        raise ConfigError(str(e)) from None
    return validate(obj)


def config_from_dict(values: dict) -> Config:
    """A ``Config`` from ``to_dict`` output (enums as strings), typed and validated by the schema."""
    return to_config(OmegaConf.merge(OmegaConf.structured(Config), values))


def compose(overrides: list[str]) -> Config:
    """The validated config of one run; an override that cannot change it is refused."""
    with hydra_context():
        cfg = to_config(compose_dict(overrides))
    errors = check_effect(cfg, overrides, is_group)
    if errors:
        raise ConfigError("\n".join(errors))
    return cfg
