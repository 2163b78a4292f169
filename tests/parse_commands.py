"""Parse documented commands with the real command-line parser of each tool, and stop there.

``python tests/parse_commands.py < commands.json`` reads ``[[how, target, argv], ...]`` (``how`` is
``module`` or ``path``), runs each tool's own ``__main__`` code with ``sys.argv`` set, and stops it right
after its top-level ``argparse`` parse succeeded: nothing is built, trained or sent. A training command
(``ume_mma.train``, ``ume_mma.jobs start``) also has its config loaded with its ``key=value`` overrides,
so an unknown key or a wrongly typed value is caught as the trainer would catch it. Prints one JSON line
per command: ``{"ok": bool, "code": exit code, "stderr": what the parser said}``. A tool that exits before
parsing (or never parses) is not ok.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import runpy
import sys


class Parsed(BaseException):
    """Raised once the top-level parse succeeded (a BaseException: the tools' ``except Exception`` let it by)."""

    def __init__(self, namespace: argparse.Namespace | None = None) -> None:
        super().__init__()
        self.namespace = namespace


STATE = {"depth": 0, "in_parse_args": False}
ORIG_PARSE_ARGS = argparse.ArgumentParser.parse_args
ORIG_PARSE_KNOWN = argparse.ArgumentParser.parse_known_args


def parse_known_args(self, args=None, namespace=None):
    STATE["depth"] += 1
    try:
        result = ORIG_PARSE_KNOWN(self, args, namespace)
    finally:
        STATE["depth"] -= 1
    if STATE["depth"] == 0 and not STATE["in_parse_args"]:
        raise Parsed(result[0])
    return result


def parse_args(self, args=None, namespace=None):
    if STATE["in_parse_args"]:
        return ORIG_PARSE_ARGS(self, args, namespace)
    STATE["in_parse_args"] = True
    try:
        parsed = ORIG_PARSE_ARGS(self, args, namespace)  # unknown arguments end here, in the tool's own words
    finally:
        STATE["in_parse_args"] = False
    raise Parsed(parsed)


ORIG_PARSE_INTERMIXED = argparse.ArgumentParser.parse_intermixed_args


def parse_intermixed_args(self, args=None, namespace=None):
    """Options anywhere (``parse_intermixed_args`` parses twice inside): the parse is done when both passes are."""
    STATE["in_parse_args"] = True
    try:
        parsed = ORIG_PARSE_INTERMIXED(self, args, namespace)
    finally:
        STATE["in_parse_args"] = False
    raise Parsed(parsed)


def training_config(target: str, ns: argparse.Namespace | None) -> None:
    """Load the training config a ``train`` or ``jobs start`` command names, with its overrides."""
    from ume_mma.trainconfig import load_config

    if target == "ume_mma.train":
        load_config(ns.config, ns.overrides)
    elif target == "ume_mma.jobs" and ns.command == "start" and ns.items and "=" not in ns.items[0]:
        load_config(ns.items[0], ns.items[1:], out="(set per job)")


def run(how: str, target: str, argv: list[str]) -> dict:
    STATE.update(depth=0, in_parse_args=False)
    err = io.StringIO()
    sys.argv = [target, *argv]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if how == "module":
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
                runpy.run_path(target, run_name="__main__")
    except Parsed as parsed:
        try:
            training_config(target, parsed.namespace)
        except Exception as exc:  # noqa: BLE001 - the trainer's own refusal, reported to the test
            return {"ok": False, "code": 2, "stderr": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "code": 0, "stderr": ""}
    except SystemExit as exc:
        return {"ok": False, "code": exc.code, "stderr": err.getvalue()[-2000:]}
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
        return {"ok": False, "code": None, "stderr": f"{type(exc).__name__}: {exc}\n{err.getvalue()[-2000:]}"}
    return {"ok": False, "code": None, "stderr": "the tool finished without parsing its arguments"}


def main() -> None:
    argparse.ArgumentParser.parse_args = parse_args
    argparse.ArgumentParser.parse_known_args = parse_known_args
    argparse.ArgumentParser.parse_intermixed_args = parse_intermixed_args
    for how, target, argv in json.load(sys.stdin):
        print(json.dumps(run(how, target, argv)), flush=True)


if __name__ == "__main__":
    main()
