"""The two kinds of mistake a user can make, each told in one line, and how the command line finds
the flag that set a parameter."""

import importlib


class UserError(Exception):
    """Something the user can fix (a path, a file, a flag), said in words that fit the command
    that was run."""


class ParameterError(ValueError):
    """A value a class cannot work with, raised by the class that takes it and naming the parameter
    as the class spells it. The command line names the flag that set it instead."""

    def __init__(self, owner: object, parameter: str, problem: str) -> None:
        self.owner = owner if isinstance(owner, type) else type(owner)
        self.parameter, self.problem = parameter, problem
        super().__init__(f"{parameter} {problem}")


def config_key(node, owner: type, prefix: str = "") -> str | None:
    """Where in a config (as nested dicts) the class `owner` is named by a class_path, as a dotted
    key (`model.net`, `trainer.callbacks`); None when it is not named."""
    if isinstance(node, dict):
        if _is_class(node.get("class_path"), owner):
            return prefix
        children = [(f"{prefix}.{k}" if prefix else k, v) for k, v in node.items() if k != "init_args"]
        children += [(prefix, node["init_args"])] if isinstance(node.get("init_args"), dict) else []
    elif isinstance(node, list):
        children = [(prefix, item) for item in node]
    else:
        return None
    return next((key for path, child in children if (key := config_key(child, owner, path))), None)


def _is_class(class_path, owner: type) -> bool:
    return named_class({"class_path": class_path}) is owner


def named_class(config) -> type | None:
    """The class a config entry (`{class_path: ..., init_args: ...}`, parsed or not) names; None
    when it names none, or one that does not import."""
    class_path = config.get("class_path") if hasattr(config, "get") else None
    if not isinstance(class_path, str) or "." not in class_path:
        return None
    module, name = class_path.rsplit(".", 1)
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return found if isinstance(found, type) else None
