"""sweeps/hydra_adapter.py against Hydra itself: composing the config groups and then applying the
plain overrides with the adapter must give exactly what one full Hydra compose of all the overrides
gives, for every form of value the override grammar has. A change in Hydra or OmegaConf that makes
them differ fails here, naming the override."""

from __future__ import annotations

import copy

import pytest
from omegaconf import OmegaConf

from sweeps.compose import compose_dict, hydra_context
from sweeps.hydra_adapter import apply_plain_overrides, is_plain, parse_overrides
from trainer.knobs import ConfigError

# (config-group overrides composed first, plain overrides the adapter applies)
CORPUS = [
    ([], ["seed=7"]),  # int
    ([], ["algorithm.kl.coef=1e-3"]),  # float, scientific
    ([], ["rollout.temperature=2"]),  # an int into a float field
    ([], ["algorithm.nthr.beta=-inf"]),  # non-finite float
    ([], ["rollout.n=int(6.0)"]),  # a cast function
    ([], ["algorithm.lopti.enabled=true"]),  # bool
    ([], ["algorithm.kl.estimator=k1"]),  # an enum by name
    ([], ["algorithm.clip.high=0.28", "algorithm.clip.low=0.1"]),  # nested keys, in order
    ([], ["seed=3", "seed=5"]),  # the same key twice: the last wins
    ([], ["task.arithmetic.ops=[+,'*']"]),  # list, one element quoted
    ([], ["diagnostics.prob_bins=[0.1,0.9]"]),  # list of floats replaces the default
    ([], ["sweep.seeds=[]"]),  # empty list
    ([], ["algorithm.kl={coef: 0.5}"]),  # a dict merged into a section keeps its other keys
    ([], ["launcher.partition='gpu,big'"]),  # single-quoted, with a comma
    ([], ['tracker.project="my project"']),  # double-quoted, with a space
    ([], ["tracker.project=a b"]),  # unquoted, inner whitespace
    ([], ["launcher.partition=a\\,b"]),  # escaped comma
    ([], ["task.jsonl.prompt_template='Q: {question} A:'"]),  # braces and a colon in a string
    ([], ["model.path=/tmp/some/model"]),  # a path
    (["launcher=slurm_local"], ["launcher.partition=null"]),  # null into an optional field
    ([], ["algorithm.clip.dual=3"]),  # a number into an optional float
    ([], ["sweep.id=abc", "tracker.project=${sweep.id}"]),  # an interpolation, kept unresolved
    (["algorithm=gspo"], ["algorithm.clip.low=0.001"]),  # on top of a config-group choice
    (["launcher=slurm"], ["launcher.partition=gpu", "launcher.max_requeues=5"]),
]
# overrides Hydra refuses; the adapter must refuse them too, naming the key
REFUSED = [
    (["algorithm.kl.nope=1"], "algorithm.kl.nope"),  # no such key
    (["nope=1"], "nope"),
    (["algorithm.kl.coef=abc"], "algorithm.kl.coef"),  # not a float
    (["rollout.n=null"], "rollout.n"),  # null into a non-optional int
    (["algorithm.kl.estimator=k9"], "algorithm.kl.estimator"),  # not a valid enum value
    (["launcher.env={HF_HOME: /scratch/hf}"], "launcher.env"),  # new keys of a map need +launcher.env.HF_HOME=
]


@pytest.fixture(scope="module")
def hydra():
    with hydra_context():
        yield


def _adapter(groups, plain):
    cfg = copy.deepcopy(compose_dict(groups))
    apply_plain_overrides(cfg, plain)
    return cfg


@pytest.mark.parametrize("groups,plain", CORPUS, ids=[" ".join(p) for _, p in CORPUS])
def test_plain_overrides_give_what_a_full_compose_gives(hydra, groups, plain):
    full = compose_dict([*groups, *plain])
    ours = _adapter(groups, plain)
    assert OmegaConf.to_container(ours) == OmegaConf.to_container(full)  # interpolations unresolved
    assert OmegaConf.to_container(ours, resolve=True) == OmegaConf.to_container(full, resolve=True)
    assert OmegaConf.is_struct(ours) == OmegaConf.is_struct(full)
    # and the override did something: the corpus is not vacuous
    assert OmegaConf.to_container(ours) != OmegaConf.to_container(compose_dict(groups))


@pytest.mark.parametrize("plain,key", REFUSED, ids=[" ".join(p) for p, _ in REFUSED])
def test_what_hydra_refuses_the_adapter_refuses_naming_the_key(hydra, plain, key):
    with pytest.raises(ConfigError) as full:
        compose_dict(plain)
    with pytest.raises(ConfigError) as ours:
        _adapter([], plain)
    assert key in str(full.value)
    chain, e = [], ours.value  # the message and its causes, as sweeps.compose.explain_error reads them
    while e is not None:
        chain.append(str(e))
        e = e.__cause__
    assert any(key in text for text in chain), chain


def test_only_plain_overrides_are_applied(hydra):
    forms = {"a.b=1": True, "+a.b=1": False, "++a.b=1": False, "~a.b": False, "a@pkg=x": False,
             "a.b=1,2": False, "a.b=choice(1,2)": False, "hydra.run.dir=x": False, "hydra=x": False}
    assert {f: is_plain(o) for f, o in zip(forms, parse_overrides(list(forms)))} == forms
    with pytest.raises(ValueError, match=r"'\+seed=1' is not a plain key=value override"):
        _adapter([], ["+seed=1"])
