"""jsonargparse's multi-line report of a bad command line or config value as one line that names the
key and says what would be valid: ``KEY: expected TYPE, got VALUE``, ``KEY: no such option of CLASS;
did you mean ...``, ``KEY: cannot import CLASS_PATH (...); ...``."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re


def one_line_parse_error(message: str) -> str:
    """The report ``message`` as one line; messages of an unknown shape are collapsed onto one line."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    if not keys:
        return " ".join(message.split())
    key = ".".join(keys)
    nested = re.search(r"NestedArg\(key='([^']+)', val=(.*)\)\s*$", message, re.S)
    owners = re.findall(r"given class_path '([\w.]+)'", message)
    option = re.search(r"Option '([^']+)' is not accepted|Unrecognized arguments: --(\S+?)=", message)
    if option:
        name = option.group(1) or option.group(2)
        if re.match(r"\d+\.", name):
            return (f"{key}.{name}: a list item cannot be chosen by its index on the command line; "
                    f"--{key}.{name.split('.', 1)[1]}=... sets it on the last item, or give the whole list in a -c file")
        return f"{key}.{name.replace('init_args.', '')}: no such option of {owners[-1]}{_suggestion(name, _options(owners[-1]))}"
    failed = re.search(r"given class_path '([\w.]+)':\s*\n\s*((?:No module named|module '[\w.]+' has no attribute) [^\n]*)", message)
    if failed:
        path, reason = failed.groups()
        module, _, name = path.rpartition(".")
        classes = _classes_in(module)
        close = difflib.get_close_matches(name, classes, n=1)
        hint = (f"; did you mean {module}.{close[0]}?" if close else _subtypes(message[message.rfind(f'Parser key "{keys[-1]}"'):])
                or f"; valid: {', '.join(f'{module}.{c}' for c in classes)}")
        return f"{key}: cannot import {path} ({reason}){hint}"
    tail = message[message.rfind(f'Parser key "{keys[-1]}"'):]
    expected = []
    for whole, name in re.findall(r"Expected a (<class '([\w.]+)'>|typing\.Literal\[[^\]]*\])", tail):
        if name != "NoneType":
            expected.append(name or "one of " + whole[len("typing.Literal["):-1])
    got = re.search(r"Got value: (.*?)(?:\n|$)", tail)
    given = re.search(r"Given value: (.*?)\s*$", message, re.S)
    value = nested.group(2) if nested else got.group(1) if got else given.group(1) if given else "?"
    key = f"{keys[0]}.{nested.group(1)}" if nested else key
    return f"{key}: expected {' or '.join(expected) or 'another value'}, got {value.strip()}"


def _suggestion(name: str, valid: list[str]) -> str:
    """``; did you mean X?`` for a near miss, else ``; valid: ...`` (nothing when ``valid`` is empty)."""
    close = difflib.get_close_matches(name, valid, n=1)
    return f"; did you mean {close[0]}?" if close else f"; valid: {', '.join(valid)}" if valid else ""


def _options(class_path: str) -> list[str]:
    """The init arguments of ``class_path``, its parents' included where it passes ``**kwargs`` on."""
    module, _, name = class_path.rpartition(".")
    options: list[str] = []
    for cls in inspect.getmro(getattr(importlib.import_module(module), name)):  # imported by jsonargparse already
        parameters = inspect.signature(cls.__init__).parameters.values()
        options += [p.name for p in parameters if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return list(dict.fromkeys(options))
    return list(dict.fromkeys(options))


def _classes_in(module_name: str) -> list[str]:
    """The public classes of a module (none when it cannot be imported)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    return [name for name, value in vars(module).items() if inspect.isclass(value) and not name.startswith("_")]


def _subtypes(report: str) -> str:
    """``; expected ...`` from jsonargparse's list of the types a key takes (nothing when it has none)."""
    listed = re.search(r"Subtypes: \[(.*)\]", report)
    if not listed:
        return ""
    kinds = []
    for item in re.findall(r"<class '([\w.]+)'>|[\w.]+\[([\w.]+)\]", listed.group(1)):
        single, many = item
        kinds.append({"NoneType": "null", "bool": "true/false"}.get(single) or
                     (f"a class path of {single}" if single else f"a list of {many} class paths"))
    return f"; expected {', '.join(kinds[:-1])} or {kinds[-1]}" if len(kinds) > 1 else ""
