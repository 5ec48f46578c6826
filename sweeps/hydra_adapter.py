"""Apply plain ``key=value`` overrides to an already composed config, exactly as Hydra's compose would.

Hydra composes in two phases: the defaults list (config groups) is merged first, then the plain
``key=value`` overrides are applied to the result in command-line order. A sweep's cells mostly
differ in plain values (seeds, coefficients), so ``sweeps.plan`` does the first phase once per
distinct set of group choices and the second one here, on a copy for each cell.

Hydra's second phase is private (``ConfigLoaderImpl._apply_overrides_to_config``). For a plain
override it is ``OmegaConf.update(cfg, key, override.value(), merge=True)`` on the struct-flagged
composed config, an unknown key being refused, so this module does that with public APIs only:
Hydra's ``OverridesParser`` (``hydra.core.override_parser``), ``Override.value()`` and
``OmegaConf.update``. Other forms (``+key``, ``++key``, ``~key``, ``key@pkg``, sweeps) are not
plain and are refused here: they go through a full compose. ``tests/test_hydra_adapter.py``
compares this with a full Hydra compose over a corpus of override forms, so a change in either
library fails loudly there.
"""

from __future__ import annotations

import functools
from typing import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, flag_override
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from trainer.knobs import ConfigError


@functools.lru_cache(maxsize=1)
def _parser() -> OverridesParser:
    return OverridesParser.create()


def parse_overrides(overrides: Sequence[str]) -> list[Override]:
    """Hydra's own parse of command-line overrides; ``ConfigError`` naming them on bad syntax."""
    try:
        return _parser().parse_overrides(list(overrides))
    except Exception:  # Hydra raises several types for bad syntax: name the override, in one line
        for line in overrides:
            try:
                _parser().parse_overrides([line])
            except Exception as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ConfigError(f"{line!r}: not an override Hydra can read ({first}); quote values with spaces "
                                  "or special characters, e.g. key='a b' "
                                  "(https://hydra.cc/docs/advanced/override_grammar/basic/)") from None
        raise


def is_plain(override: Override) -> bool:
    """A ``key=value`` on the config itself: no ``+``/``++``/``~`` prefix, no ``@package``, not a
    sweep and not Hydra's own node. (Whether the key names a config group instead depends on the
    config directory: the caller decides.)"""
    prefixed = override.is_add() or override.is_force_add() or override.is_delete()
    hydra = override.is_hydra_override() or override.key_or_group == "hydra"
    return not (prefixed or hydra or override.package is not None or override.is_sweep_override())


def apply_plain_overrides(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Apply ``overrides`` (plain ``key=value``, in order) to ``cfg`` in place, as Hydra's compose
    applies them after the defaults list. ``ConfigError`` naming the override (and, for a key the
    config lacks, the key and the ``+key=value`` that would add it)."""
    for line, override in zip(overrides, parse_overrides(overrides)):
        if not is_plain(override):
            raise ValueError(f"{line!r} is not a plain key=value override; compose it with Hydra instead")
        key = override.key_or_group
        try:
            with flag_override(cfg, "struct", True):
                OmegaConf.update(cfg, key, override.value(), merge=True)
        except (ConfigAttributeError, ConfigKeyError) as e:
            raise ConfigError(f"Could not override '{key}': the config has no such key."
                              f"\nTo append to your config use +{line}") from e
        except OmegaConfBaseException as e:
            raise ConfigError(f"Error merging override {line}") from e
