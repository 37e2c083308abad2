"""What lit_mnist.compat reaches for inside Lightning is still there, and still needed: a Lightning
upgrade that moves it, or fixes the bug it works around, fails here with the function to revisit."""

import inspect

from lightning.pytorch.loops import _FitLoop

from conftest import quiet_trainer
from lit_mnist.compat import starts_processes_per_stage


def test_the_fit_loop_attributes_compat_touches_exist():
    loop = quiet_trainer(max_epochs=1).fit_loop
    for name in ("_combined_loader", "_data_fetcher", "_restarting"):
        assert hasattr(loop, name), f"lightning's fit loop has no {name}: revisit lit_mnist.compat"


def test_ddp_spawn_is_known_by_its_launcher():
    spawning = quiet_trainer(strategy="ddp_spawn", devices=2, accelerator="cpu", max_epochs=1)
    assert starts_processes_per_stage(spawning)
    assert not starts_processes_per_stage(quiet_trainer(strategy="ddp", devices=2, accelerator="cpu"))
    assert not starts_processes_per_stage(quiet_trainer(max_epochs=1))


def test_lightning_still_skips_the_plateau_step_of_a_resumed_epoch():
    source = inspect.getsource(_FitLoop.on_advance_end)
    assert "update_plateau_schedulers=not self.restarting" in source, (
        "lightning changed when ReduceLROnPlateau steps after a resume: revisit compat.end_restart"
    )


def test_lightning_still_keeps_the_loader_set_up_before_the_restore():
    source = inspect.getsource(_FitLoop.setup_data)
    assert "if self._combined_loader is not None and not self._should_reload_train_dl:" in source, (
        "lightning changed how the fit loop reuses its training loader: revisit compat.stepping_batches"
    )


def test_lightning_cli_still_takes_the_hparams_from_its_cached_config_dump():
    from lightning.pytorch.cli import LightningCLI, _InstantiatorFn

    assert "self.cli._dump_config()" in inspect.getsource(_InstantiatorFn.__call__)
    assert 'hasattr(self, "config_dump")' in inspect.getsource(LightningCLI._dump_config), (
        "LightningCLI no longer caches its config dump: revisit compat.keep_hyperparameters_as_given"
    )
