"""A finished run of the demo (levels 0 and 1), made once per test module, for the tests that copy and damage it."""
import pytest

from lottery.cli.command import main
from tests.cli.helpers import DEMO, TINY_RUN


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run with levels 0 and 1 (copied by each test that damages it)."""
    runs = tmp_path_factory.mktemp("finished")
    assert main(["run", "--config", DEMO, f"runs_dir={runs}", *TINY_RUN, "prune.levels=1"]) == 0
    return runs / "demo"
