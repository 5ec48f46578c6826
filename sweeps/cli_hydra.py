"""The Hydra habits of ``grpolab config / train / sweep``: ``--cfg job|all``, ``--info``,
``config --groups``, and ``-m`` / comma sweeps on a command that composes one config.

What they print comes from Hydra's own APIs (the compose API with ``return_hydra_config``, the
config loader's search path, groups, options and defaults list), so it is what Hydra sees; the
one-line descriptions of the options are the first comment line of each YAML file.
"""

from __future__ import annotations

import shlex
import sys

from trainer.knobs import ConfigError

# One line per config group (a folder of conf/); tests/test_cli_hydra.py checks every folder has one.
GROUP_HELP = {
    "algorithm": "the loss and its advantage, clipping and KL settings (GRPO, Dr.GRPO, DAPO, GSPO, DFPO, GRPO-fix)",
    "algorithm/features": "token-level variants switched on as a list: '+algorithm/features=[nthr,adv_reweight]'",
    "batching": "how a step's rollouts are split into mini-batches (batching.mode)",
    "engine": "the optimizer backend: plain torch, or DeepSpeed ZeRO 0-3",
    "experiment": "a whole ablation grid of a paper or the demo (sweep.params, seeds, scale)",
    "launcher": "where cells run: local child processes, or SLURM jobs",
    "model": "the policy: the tiny local Qwen2, or a Hugging Face checkpoint",
    "paper_scale": "the model, task and batch sizes of a paper's runs, on top of an experiment",
    "rollout": "the sampler: Hugging Face generate, or vLLM",
    "sweep": "sweep.params and seeds a grpolab sweep expands",
    "task": "the dataset and its reward",
    "tracker": "where metrics go besides the run record: nowhere, or W&B",
    "variant": "a named ablation cell, for sweeping variant=a,b,c",
}


def groups() -> dict[str, list[tuple[str, str]]]:
    """{group: [(option, its YAML's first comment line)]} for every group Hydra finds under conf/
    (Hydra's own ``hydra`` group aside), nested groups as ``algorithm/features``."""
    from hydra.core.global_hydra import GlobalHydra

    from sweeps.compose import conf_dir, hydra_context

    out: dict[str, list[tuple[str, str]]] = {}
    with hydra_context():
        loader = GlobalHydra.instance().config_loader()

        def walk(parent: str) -> None:
            for name in sorted(loader.list_groups(parent)):
                group = f"{parent}/{name}" if parent else name
                if group == "hydra":
                    continue
                out[group] = [(o, _first_comment(conf_dir() / group / f"{o}.yaml"))
                              for o in loader.get_group_options(group)]
                walk(group)

        walk("")
    return dict(sorted(out.items()))


def _first_comment(path) -> str:
    """The first line of a YAML file's leading comment (``# @package`` lines aside), with ``…`` when
    its sentence goes on."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    block = [t.lstrip("#").strip() for t in (line.strip() for line in lines[:10]) if t.startswith("#")
             and not t.startswith("# @package")]
    if not block:
        return ""
    ends = block[0].endswith((".", ")", ":")) or len(block) == 1
    return block[0] if ends else block[0] + " …"


def print_groups() -> None:
    for group, options in groups().items():
        print(f"{group}: {GROUP_HELP.get(group, '')}")
        width = max((len(o) for o, _ in options), default=0)
        for option, text in options:
            print(f"  {option:<{width}}  {text}".rstrip())


def print_info(overrides: list[str]) -> None:
    """Hydra's ``--info``: the config search path, the groups and their options, and the defaults
    list these overrides compose (for a sweep: its first cell's)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from sweeps.compose import hydra_context
    from sweeps.expand import build_sweep_grid, split_overrides

    first = list(overrides)
    if split_overrides(first)[1]:
        grid = build_sweep_grid(first, {}, [0])
        first = grid.overrides(grid.cells()[0])
    with hydra_context():
        loader = GlobalHydra.instance().config_loader()
        search = [(e.provider, e.path) for e in loader.get_search_path().get_path()]
        try:
            defaults = loader.compute_defaults_list("config", first, RunMode.RUN).defaults
        except Exception as e:  # Hydra's own kinds; say it in one line, as compose would
            from sweeps.compose import explain_error

            raise ConfigError(explain_error(first, e)) from None
    print("Config search path:")
    for provider, path in search:
        print(f"  {provider}: {path}")
    print("\nConfig groups (grpolab config --groups describes each option):")
    for group, options in groups().items():
        print(f"  {group}: {', '.join(o for o, _ in options)}")
    cell = "" if first == list(overrides) else f" (first cell: {shlex.join(first)})"
    print(f"\nDefaults list{cell}:")
    for d in defaults:
        if d.config_path and not d.config_path.startswith("hydra/"):
            print(f"  {d.config_path}" + (f"  (package {d.package})" if d.package else ""))


def hydra_node(overrides: list[str]) -> dict:
    """The ``hydra:`` node Hydra composes beside the config (unresolved: it holds ``${now:...}``)."""
    from hydra import compose as hydra_compose
    from omegaconf import OmegaConf

    from sweeps.compose import hydra_context

    with hydra_context():
        cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
        return OmegaConf.to_container(cfg.hydra, resolve=False)


ALL_NOTE = ("# --cfg all: the config above plus the hydra: node Hydra composes beside it. grpolab reads none "
            "of it\n# (it composes with Hydra's compose API; hydra.* overrides are refused): runs go to "
            "paths.output_root.\n")


def config_text(cfg, overrides: list[str], kind: str = "job") -> str:
    """The config as ``grpolab config`` prints it (``job``), and for ``all`` the ``hydra:`` node too."""
    import yaml

    from trainer.identity import config_hash, to_dict
    from trainer.secrets import redact_config

    text = yaml.safe_dump(redact_config(to_dict(cfg)), sort_keys=False)  # as config.yaml records it
    if kind == "all":
        text += ALL_NOTE + yaml.safe_dump({"hydra": hydra_node(overrides)}, sort_keys=False)
    return text + f"# config hash: {config_hash(cfg)}\n"


def refuse_sweeps(command: str, overrides: list[str], multirun: bool = False) -> None:
    """A command that composes one config refuses ``key=a,b`` in one line pointing at grpolab sweep;
    ``-m`` without a sweep is said to be needless and goes on."""
    from sweeps.hydra_adapter import parse_overrides

    swept = [text for text, o in zip(overrides, parse_overrides(overrides)) if o.is_sweep_override()]
    if swept:
        raise ConfigError(f"{swept[0]}: a sweep, and grpolab {command} composes one config; run the grid with: "
                          f"{shlex.join(['grpolab', 'sweep', *overrides])}")
    if multirun:
        print(f"note: -m/--multirun: grpolab {command} runs one config; a grid of them is "
              f"{shlex.join(['grpolab', 'sweep', *overrides])}", file=sys.stderr)
