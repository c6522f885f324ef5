"""Hydra structured-config schemas, generated at import time from the plugin's own config dataclasses.

The method YAML files put each schema under its block (``conjunction``, ``sae``, ``audit``) in their defaults
list, so Hydra type-checks the block when it composes the config: ``diffing.method.sae.k=3.5`` or an unknown
key fails before any model loads, with the key named. Schemas are generated from the dataclasses
(:class:`~cbd_plugin.backdoor.config.ConjunctionConfig`, :class:`~cbd_plugin.refusal.config.AuditConfig`,
:class:`~cbd_plugin.sae.contrastive_trainer.ContrastiveSAEConfig`), never copied, so a field added there is
checked here too.

OmegaConf checks types only. Value rules (``temperature`` > 0, fractions in (0, 1), ...) live in the dataclasses'
own validation; :func:`validate_method_config` runs it on a composed config, and both methods call it in their
constructor, which the host runs before preprocessing or any model load.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Optional

SCHEMA_GROUP = "cbd_plugin_schema"


@dataclass(frozen=True)
class SchemaSpec:
    """One block of a method config and the dataclass it feeds."""

    name: str  # ConfigStore name, under SCHEMA_GROUP
    dataclass_path: str  # "module:Class" of the source dataclass (imported when schemas are built)
    exclude: tuple[str, ...] = ()  # fields the method fills itself (not settable from YAML)


SCHEMAS = (
    SchemaSpec("conjunction", "cbd_plugin.backdoor.config:ConjunctionConfig"),
    SchemaSpec("audit", "cbd_plugin.refusal.config:AuditConfig"),
    # activation_dim and layer come from the model, lm_name and device from the run, wandb_name is fixed.
    SchemaSpec(
        "contrastive_sae",
        "cbd_plugin.sae.contrastive_trainer:ContrastiveSAEConfig",
        exclude=("activation_dim", "layer", "lm_name", "submodule_name", "device", "wandb_name"),
    ),
)


def _omegaconf_type(hint: Any) -> Any:
    """The nearest annotation OmegaConf 2.3 accepts: PEP 604 unions -> Optional, tuples -> List, builtin
    generics -> typing generics."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return Optional[_omegaconf_type(rest[0])]  # noqa: UP045 - OmegaConf 2.3 reads typing.Optional only
        return Any  # a true union: OmegaConf cannot check it, the dataclass will
    if origin in (tuple, list):
        items = [a for a in args if a is not Ellipsis]
        return list[_omegaconf_type(items[0])] if len(set(items)) == 1 else list[Any]
    if origin is dict:
        return dict[_omegaconf_type(args[0]), _omegaconf_type(args[1])] if args else dict[str, Any]
    return hint


def _field_default(field: dataclasses.Field) -> dataclasses.Field:
    if field.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=field.default_factory)
    if field.default is dataclasses.MISSING:
        return dataclasses.field(default="???")  # required: the YAML must set it
    default = field.default
    if isinstance(default, tuple):  # OmegaConf keeps lists, not tuples
        return dataclasses.field(default_factory=lambda d=default: list(d))
    return dataclasses.field(default=default)


def schema_for(source: type, exclude: tuple[str, ...] = ()) -> type:
    """A dataclass with ``source``'s fields (types mapped for OmegaConf, defaults kept), minus ``exclude``."""
    hints = typing.get_type_hints(source)
    fields = [
        (f.name, _omegaconf_type(hints[f.name]), _field_default(f))
        for f in dataclasses.fields(source)
        if f.name not in exclude and f.init
    ]
    return dataclasses.make_dataclass(f"{source.__name__}Schema", fields)


def _import(path: str) -> type:
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent; the search-path plugin calls it)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for spec in SCHEMAS:
        store.store(group=SCHEMA_GROUP, name=spec.name, node=schema_for(_import(spec.dataclass_path), spec.exclude))


def _check(block_name: str, build) -> None:
    try:
        build()
    except (TypeError, ValueError, KeyError) as exc:
        # Name the config path: the dataclass message names the field, a user needs the key to override.
        raise type(exc)(f"diffing.method.{block_name}: {exc}") from exc


def validate_method_config(method_cfg) -> None:
    """Build every dataclass a method config block feeds, so their value checks run now (before any model or
    dataset loads); errors name the ``diffing.method.<block>`` key."""
    from omegaconf import OmegaConf

    blocks = {"conjunction": "conjunction", "audit": "audit", "sae": "contrastive_sae"}
    for key, schema_name in blocks.items():
        if method_cfg.get(key) is None:
            continue
        spec = next(s for s in SCHEMAS if s.name == schema_name)
        values = OmegaConf.to_container(method_cfg[key], resolve=True)
        source = _import(spec.dataclass_path)
        unknown = set(values) - {f.name for f in dataclasses.fields(source)}
        if unknown:
            raise KeyError(f"diffing.method.{key}: unknown keys {sorted(unknown)}")
        _check(key, lambda: source(**values))
