"""The default recipe on the real MNIST in $DATA_DIR (required in CI, skipped where absent)."""

import json

import pytest

from conftest import ROOT, run_cli


@pytest.mark.slow
def test_one_epoch_of_the_default_recipe_reaches_98_percent(real_mnist, tmp_path):
    run_cli(
        "fit",
        "--config",
        str(ROOT / "configs" / "default.yaml"),
        f"--data.data_dir={real_mnist}",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        cwd=tmp_path,
    )
    metrics = json.loads((tmp_path / "logs" / "default" / "version_0" / "metrics.json").read_text())
    assert (metrics["epochs"], metrics["steps"]) == (1, 860)  # 55,000 images in batches of 64
    assert metrics["test/acc"] >= 0.98, metrics
