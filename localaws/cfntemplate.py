"""The CloudFormation templates of ``cfn/`` read as data: each short form (``!Ref``,
``!Sub``, ``!GetAtt``, ...) as its long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``), as
CloudFormation reads them.

Why not cfn-lint's decoder: importing anything of cfnlint imports sympy and networkx, a second
of CPU in every pytest worker that collects a module using it, and 22 MB of bytecode that a
fresh checkout compiles (docs/testing.md, "Session 7").  cfn-lint still lints every template,
as the command (``tests/test_cfn.py``), and a test checks that this reader and cfn-lint's
decoder give the same data for each template.
"""
from __future__ import annotations

from typing import Any

import yaml


class _Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """YAML 1.1 as CloudFormation takes it: ``2010-09-09`` stays a string, not a date."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _short_form(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):  # !GetAtt Resource.Attribute
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _short_form)


def loads(text: str) -> dict[str, Any]:
    """A template's text (YAML or JSON) as CloudFormation's data."""
    template = yaml.load(text, Loader=_Loader)  # nosec: a SafeLoader
    if not isinstance(template, dict):
        raise ValueError("a template is a mapping")
    return template


def load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return loads(handle.read())
