"""RunLayout: the one place run-folder paths are spelled, and the folders it finds back."""
import re
from pathlib import Path

from lottery.core.layout import RunLayout

PACKAGE = Path(__file__).resolve().parents[2] / "lottery"


def test_paths_of_an_experiment(tmp_path):
    run = RunLayout.of(tmp_path, "demo")
    seed = run.seed(3)
    level = seed.level(7)
    assert run.config == tmp_path / "demo" / "config.yaml"
    assert (run.curve("csv").name, run.curve("png").name, run.curve_seeds.name) == ("curve.csv", "curve.png", "curve_seeds.csv")
    assert seed.rewind(0) == tmp_path / "demo" / "seed_3" / "init.safetensors"
    assert seed.rewind(500) == tmp_path / "demo" / "seed_3" / "rewind_step_500.safetensors"
    assert level.path == tmp_path / "demo" / "seed_3" / "level_07"
    assert (level.mask.name, level.final.name, level.metrics.name) == ("mask.safetensors", "final.safetensors", "metrics.json")
    assert level.checkpoint == level.path / "checkpoints" / "last.ckpt"
    assert level.branch("reinit").final == level.path / "branch_reinit" / "final.safetensors"
    stability = run.stability(3)
    assert stability.copy(2, 100, "a").path == tmp_path / "demo" / "stability" / "seed_3" / "level_02" / "k_100" / "copy_a"
    assert stability.rewind(20).name == seed.rewind(20).name  # one spelling of a rewind point


def test_finds_seeds_levels_and_branches_back(tmp_path):
    run = RunLayout.of(tmp_path, "x")
    assert run.seeds() == [] and run.seed(0).levels() == [] and run.seed(0).level(0).branches() == []
    for s, level in [(0, 0), (0, 1), (0, 12), (2, 0)]:
        run.seed(s).level(level).path.mkdir(parents=True)
    run.seed(0).level(1).branch("random_prune").path.mkdir()
    run.seed(0).level(1).branch("reinit").path.mkdir()
    (run.path / "seed_notes").mkdir()  # not a seed folder
    (run.seed(0).path / "level_01.tmp").write_text("")  # not a level folder
    assert run.seeds() == [0, 2]
    assert run.seed(0).levels() == [0, 1, 12]
    assert run.seed(0).level(1).branches() == ["random_prune", "reinit"]
    assert not run.seed(0).level(1).done
    run.seed(0).level(1).metrics.write_text("{}")
    assert run.seed(0).level(1).done


def test_no_other_module_spells_a_run_folder_path():
    spelled = re.compile(r"""["'](seed_|level_|branch_|control_|mask\.safetensors|final\.safetensors|metrics\.json|init\.safetensors|rewind_step_)""")
    offenders = [f"{p.name}:{i}" for p in PACKAGE.rglob("*.py") if p.name != "layout.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if spelled.search(line)]
    assert offenders == []
