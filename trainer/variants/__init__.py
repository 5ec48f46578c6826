"""Every variant grpolab knows: one module each, registered with ``trainer.registry`` on import.

Importing this package imports every module in it, so a new variant is one new module here (its
pure functions, its config section, its registration) plus, if it deserves a preset, one YAML file
under ``conf/`` (docs/design.md walks through an example). Variants kept outside the repository are
named in the environment variable ``GRPOLAB_VARIANTS`` (comma-separated importable modules) and
imported after these. ``trainer.config`` imports this package to build the schema, so any code
holding a config sees every variant registered.
"""

import importlib
import os
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
for _module in filter(None, (m.strip() for m in os.environ.get("GRPOLAB_VARIANTS", "").split(","))):
    importlib.import_module(_module)
