"""Reading and checking the documented JSON outputs (``migrator/schemas/*.schema.json``).

``document(result, "run")`` is what every JSON test does: stdout must be exactly one
JSON document, valid against the command's schema, whose ``ok`` agrees with the exit
code; an error document must repeat the stderr line and the exit code.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from tests.conftest import PROJECT

SCHEMAS = PROJECT / "migrator" / "schemas"


@cache
def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name), format_checker=FormatChecker())


def errors(instance: Any, name: str) -> list[str]:
    """Every way ``instance`` breaks the schema (empty when it is valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator(name).iter_errors(instance)
    ]


def document(result: Any, name: str) -> dict[str, Any]:
    """The one JSON document of a ``tbmigrate(...)`` or ``cli(...)`` result, checked."""
    code = result.code if hasattr(result, "code") else result.returncode
    out = result.out if hasattr(result, "out") else result.stdout
    err = result.err if hasattr(result, "err") else result.stderr
    data = json.loads(out)  # raises on "Extra data": more than one document
    assert errors(data, name) == [], out
    assert data["ok"] is (code == 0), (code, out, err)
    if "exit_code" in data:  # the error document
        assert data["exit_code"] == code
        assert data["error"] in err
    return data
