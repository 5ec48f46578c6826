"""Compose and validate configs with Hydra's compose API (the same grammar as the CLI).

All of a sweep's cells are composed in one Hydra context and validated before any is launched,
so one bad cell stops the sweep with its cell and key named, and nothing runs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweeps.configstore import register
from trainer.config import Config, valid_keys
from trainer.knobs import ConfigError
from trainer.provenance import REPO_ROOT
from trainer.validation import validate


def conf_dir() -> Path:
    return Path(os.environ.get("GRPOLAB_CONF_DIR", REPO_ROOT / "conf")).resolve()


@contextmanager
def hydra_context():
    register()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        yield


def compose_dict(overrides: list[str]) -> DictConfig:
    """Compose inside an active ``hydra_context``; errors become ``ConfigError`` naming the override."""
    try:
        return hydra_compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(explain_error(overrides, e)) from None


def explain_error(overrides: list[str], e: BaseException) -> str:
    """Hydra's message plus its causes (which hold the key, value and valid values) and, for an
    unknown key, the keys that exist there."""
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
        if f"'{key}'" in msg or f"Key '{key.rsplit('.', 1)[-1]}' not in" in msg:
            keys = valid_keys(key)
            if keys and key.rsplit(".", 1)[-1] not in keys:
                msg += f"\nvalid keys under {key.rsplit('.', 1)[0]}: {', '.join(keys)}"
    return msg


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
    with hydra_context():
        return to_config(compose_dict(overrides))
