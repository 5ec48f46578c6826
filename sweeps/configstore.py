"""Registers the typed schema with Hydra's ConfigStore; ``conf/config.yaml`` starts from it."""

from hydra.core.config_store import ConfigStore

from trainer.config import Config

SCHEMA_NAME = "grpolab_schema"


def register() -> None:
    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)
