from pathlib import Path

import pytest

from larpo.run_config import load_run_config

CONFIGS = sorted(Path("examples/configs").glob("*.yaml"))
EXPECTED = {
    "contrastive_top1_bottom3": ("contrastive", 10, 1, 3),
    "lambdarank_top2_bottom2": ("lambdarank", 10, 2, 2),
    "listmle_top2_bottom2": ("listmle", 10, 2, 2),
    "iterative_dpo": ("pairwise", 2, None, None),
}


def test_every_paper_setting_has_a_config():
    assert {path.stem for path in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_example_config_is_valid_and_matches_the_paper(path):
    config = load_run_config(path)
    assert (config.objective, config.num_candidates, config.positives, config.negatives) == EXPECTED[
        path.stem
    ]
    assert config.output_dir == f"runs/{path.stem}"
