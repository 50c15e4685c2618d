"""How much of lottery/ one IMP level runs, from `lottery run` to curve.png: the lines a reader follows.

Runs the demo config for one level (one epoch, seed 0) under a line tracer and counts, per module, the
distinct lines executed inside functions (class bodies, module-level code and what the import system
calls left out: declarations and import machinery, not logic). A measure for refactors: "following one level takes fewer files and fewer lines".

    .venv/bin/python experiments/trace_level.py                  # this checkout
    .venv/bin/python experiments/trace_level.py --root ../other  # another checkout of lottery, same venv
    .venv/bin/python experiments/trace_level.py --from-level     # only from level 1's start to curve.png

--from-level counts nothing before the first call into lottery/imp/runner.py whose `level` is 1: the command
line, the config and its checks, the data and the dense level 0 are left out, and what is left is one
pruned level (prune, rewind, train, branches, report) followed by the curve and the ticket.
"""
from __future__ import annotations

import argparse
import collections
import inspect
import os
import sys
import tempfile
import threading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."), help="a lottery checkout")
    parser.add_argument("--from-level", action="store_true", help="count from the start of level 1 only")
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    sys.path.insert(0, root)
    package = os.path.join(root, "lottery") + os.sep
    lines: dict[str, set[int]] = collections.defaultdict(set)
    counting = [not args.from_level]

    def tracer(frame, event, arg):
        code = frame.f_code
        if not code.co_filename.startswith(package) or not code.co_flags & inspect.CO_NEWLOCALS:
            return None  # outside lottery/, or a module or class body
        if frame.f_back is not None and frame.f_back.f_code.co_filename.startswith("<frozen importlib"):
            return None  # called by the import system (the package's lazy __getattr__ on `from lottery import x`)
        if not counting[0]:
            if code.co_filename != os.path.join(package, "imp", "runner.py") or frame.f_locals.get("level") != 1:
                return tracer  # before level 1: follow the calls, count nothing
            counting[0] = True

        def local(frame, event, arg):
            if event == "line":
                lines[code.co_filename].add(frame.f_lineno)
            return local

        lines[code.co_filename].add(code.co_firstlineno)
        return local

    from lottery.cli import command as cli

    with tempfile.TemporaryDirectory() as runs:
        argv = ["run", "--config", os.path.join(root, "experiments", "configs", "demo.yaml"), f"runs_dir={runs}",
                "prune.levels=1", "train.epochs=1", "trainer.progress=false"]
        sys.settrace(tracer), threading.settrace(tracer)
        try:
            cli.main(argv)
        finally:
            sys.settrace(None), threading.settrace(None)
    print("\n| module | lines run in functions |\n|---|---:|")
    for path in sorted(lines):
        print(f"| {os.path.relpath(path, root)} | {len(lines[path])} |")
    print(f"| **{len(lines)} modules** | **{sum(map(len, lines.values()))}** |")


if __name__ == "__main__":
    main()
