"""No pydantic model of mcfleet gives a field the builtin `list` as default_factory (util/empty.py says why).

pydantic inspects each factory's signature when the model class is created; for `list` that
parses a text signature with tokenize, which costs every command that imports the models
(plan imports ~50 such fields).  `empty_list` gives the same value.
"""

from __future__ import annotations

import importlib

from pydantic import BaseModel

from mcfleet.util.empty import empty_list

MODULES = (
    "mcfleet.fleet.models",
    "mcfleet.fleet.models_providers",
    "mcfleet.observe.facts",
    "mcfleet.observe.files",
    "mcfleet.observe.hostlevel",
    "mcfleet.observe.manifest",
    "mcfleet.plan.model",
)


def _models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for name in MODULES:
        module = importlib.import_module(name)
        found += [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, BaseModel)]
    return found


def test_no_model_field_uses_the_builtin_list_as_its_factory() -> None:
    models = _models()
    assert len(models) > 40
    builtin = [f"{m.__module__}.{m.__name__}.{n}" for m in models for n, f in m.model_fields.items()
               if f.default_factory is list]  # fmt: skip
    assert builtin == []
    uses = [m for m in models for f in m.model_fields.values() if f.default_factory is empty_list]
    assert uses  # the replacement is what they use


def test_empty_list_gives_a_new_list_each_time() -> None:
    from mcfleet.plan.model import Plan

    first, second = Plan(), Plan()
    assert first.actions == [] and first.actions is not second.actions
