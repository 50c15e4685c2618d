"""The one error type for user mistakes (the CLI prints its message and exits with code 2), and the
one message for an optional package that is missing (the extras of pyproject.toml)."""
from __future__ import annotations

import importlib
import importlib.util


class LotteryError(Exception):
    """A user mistake (bad config, wrong file, wrong architecture) with a message naming the fix."""


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (a module set to None in sys.modules cannot)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(module: str, what: str, extra: str) -> LotteryError:
    return LotteryError(f"{what} needs the {module} package, which is not installed: pip install -e \".[{extra}]\" "
                        f"in the lottery checkout (or pip install {module})")


def require(module: str, what: str, extra: str):
    """Import the optional package `module`, installed by the extra `extra`, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing(module, what, extra) from None
