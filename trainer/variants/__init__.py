"""Every variant grpolab knows: one module each, registered with ``trainer.registry`` on import.

Importing this package imports every module in it, so a new variant is one new module here (its
pure functions, its config section, its registration) plus, if it deserves a preset, one YAML file
under ``conf/`` (docs/design.md walks through an example). ``trainer.config`` imports this package
to build the schema, so any code holding a config sees every variant registered.
"""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
