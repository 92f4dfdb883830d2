"""Just enough CloudFormation to build local mode from the real template.yaml: tags and intrinsics."""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TAGS = {
    "Ref": "Ref",
    "Sub": "Fn::Sub",
    "GetAtt": "Fn::GetAtt",
    "If": "Fn::If",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "Join": "Fn::Join",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "FindInMap": "Fn::FindInMap",
    "Condition": "Condition",
    "Base64": "Fn::Base64",
    "ImportValue": "Fn::ImportValue",
    "GetAZs": "Fn::GetAZs",
    "Cidr": "Fn::Cidr",
    "Length": "Fn::Length",
    "ToJsonString": "Fn::ToJsonString",
}


class _Loader(yaml.SafeLoader):
    pass


def _tag(name: str) -> Any:
    def construct(loader: _Loader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return construct


for _short, _long in TAGS.items():
    _Loader.add_constructor(f"!{_short}", _tag(_long))


def load_template(path: Path) -> dict[str, Any]:
    return load_template_text(path.read_text(encoding="utf-8"))


def load_template_text(text: str) -> dict[str, Any]:
    """The template as data; a fresh copy each call (the parse of a text is kept: a start reads the same
    template.yaml every time, and PyYAML is most of what reading it costs)."""
    return copy.deepcopy(_parsed(text))


@functools.lru_cache(maxsize=16)
def _parsed(text: str) -> dict[str, Any]:
    data = yaml.load(text, Loader=_Loader)
    assert isinstance(data, dict)
    return data


class NoValue:
    pass


@dataclass
class Resolver:
    """Resolves intrinsics against parameters, pseudo parameters, conditions and known resources."""

    params: dict[str, Any]
    refs: dict[str, Any] = field(default_factory=dict)  # logical id -> Ref value
    attrs: dict[tuple[str, str], Any] = field(default_factory=dict)  # (logical id, attribute) -> value
    conditions: dict[str, Any] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        value = self.conditions[name]
        return bool(self.resolve(value))

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if not isinstance(v, NoValue)]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return NoValue()
                if arg in self.params:
                    return self.params[arg]
                return self.refs.get(arg, f"local-{arg}")
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.attrs.get((logical, attribute), f"arn:aws:local:::{logical}/{attribute}")
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(x) for x in arg)
            if key == "Fn::Or":
                return any(self.resolve(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(x) for x in self.resolve(items))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
        return {
            k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if not isinstance(v, NoValue)
        }

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        local = {k: self.resolve(v) for k, v in extra.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name:
                logical, attribute = name.split(".", 1)
                return str(self.resolve({"Fn::GetAtt": [logical, attribute]}))
            return str(self.resolve({"Ref": name}))

        return re.sub(r"\$\{([^}]+)\}", replace, text)
