"""The recurrent classifier: it reads an image row by row, splits into the two parameter groups,
and learns the synthetic digits."""

import pytest
import torch

from conftest import quiet_trainer
from lit_mnist.data import SPEC, MNISTDataModule
from lit_mnist.errors import ParameterError
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import RNN
from lit_mnist.optim import GroupSettings, param_groups


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_each_cell_gives_one_output_per_class(cell, bidirectional):
    net = RNN(SPEC, cell=cell, hidden=16, layers=2, bidirectional=bidirectional, dropout=0.1)
    assert isinstance(net.features, {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell])
    assert net.features.input_size == SPEC.width and net.features.num_layers == 2
    assert net.classifier[-1].in_features == 16 * (2 if bidirectional else 1)
    images = torch.randn(5, 1, 28, 28)
    assert net(images).shape == (5, SPEC.num_classes)
    net.eval()  # channels_last memory is read as the same rows
    assert torch.allclose(net(images), net(images.contiguous(memory_format=torch.channels_last)))


def test_it_reads_rows_in_order_top_to_bottom():
    torch.manual_seed(0)
    net = RNN(SPEC, cell="gru", hidden=8).eval()
    images = torch.randn(2, 1, 28, 28)
    rows_reversed = images.flip(2)
    columns_reversed = images.flip(3)
    assert not torch.allclose(net(images), net(rows_reversed))
    assert not torch.allclose(net(images), net(columns_reversed))
    # the rows of a one-channel image are the steps; the last step's state is classified
    by_hand = net.features(images.squeeze(1))[1][-1]
    assert torch.allclose(net(images), net.classifier(by_hand))


def test_the_recurrent_layers_are_the_features_and_the_linear_layer_the_classifier():
    net = RNN(SPEC, cell="lstm", hidden=16)
    groups = {g["name"]: g for g in param_groups(net, GroupSettings(), GroupSettings(lr_mult=0.5))}
    recurrent = {id(p) for p in net.features.parameters()}
    assert {id(p) for g in ("features", "features_no_decay") for p in groups[g]["params"]} == recurrent
    assert [p.shape for p in groups["classifier"]["params"]] == [(10, 16)]
    assert groups["classifier"]["lr_mult"] == 0.5 and groups["features"]["lr_mult"] == 1.0


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"cell": "transformer"}, "cell must be one of rnn, lstm, gru, got 'transformer'"),
        ({"hidden": 0}, "hidden must be at least 1, got 0"),
        ({"layers": 0}, "layers must be at least 1, got 0"),
        ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    ],
)
def test_impossible_settings_are_rejected(settings, message):
    with pytest.raises(
        ParameterError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        RNN(SPEC, **settings)


def test_the_rnn_learns_the_synthetic_digits(fake_mnist):
    torch.manual_seed(0)
    data = MNISTDataModule(data_dir=str(fake_mnist), val_size=50, batch_size=25, eval_batch_size=50)
    model = MNISTClassifier(
        data.spec,
        net=lambda spec: RNN(spec, cell="gru", hidden=32),
        optimizer=lambda params: torch.optim.Adam(params, lr=0.01),
    )
    trainer = quiet_trainer(max_epochs=6)
    trainer.fit(model, data)
    assert trainer.callback_metrics["val/acc"] > 0.5  # chance is 0.1


def bf16_lstm_runs_here() -> bool:
    """oneDNN has a bf16 LSTM only on some CPUs (AVX-512 ones, not AVX2-only ones)."""
    lstm = torch.nn.LSTM(28, 8, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.randn(2, 28, 28))
    except RuntimeError:
        return False
    return True


def test_an_lstm_run_with_ema_in_bf16_resumes_predicts_and_exports(fake_mnist, tmp_path):
    """In bf16 where this CPU runs a bf16 LSTM; elsewhere asking for it is one line, exit 2, and
    the run is made in fp32 instead."""
    from PIL import Image

    from conftest import ROOT, SMALL, run_cli

    run = [
        "--config", str(ROOT / "configs/default.yaml"), f"--data.data_dir={fake_mnist}", *SMALL,
        "--model.net=lit_mnist.nets.RNN", "--model.net.cell=lstm", "--model.net.hidden=16",
        "--model.net.bidirectional=true", "--trainer.callbacks+=lit_mnist.callbacks.EMA",
        "--trainer.precision=bf16-mixed", "--trainer.logger.init_args.name=lstm",
    ]  # fmt: skip
    if not bf16_lstm_runs_here():
        (tmp_path / "refused").mkdir()
        refused = run_cli("fit", *run, "--trainer.max_epochs=1", cwd=tmp_path / "refused", check=False)
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
        assert len(errors) == 1 and "this CPU cannot run the net in the precision asked" in errors[0]
        assert "--trainer.precision=32-true" in errors[0]
        run[-2] = "--trainer.precision=32-true"
    run_cli("fit", *run, "--trainer.max_epochs=1", "--test_after_fit=false", cwd=tmp_path)
    run_cli("fit", *run, "--trainer.max_epochs=2", "--ckpt_path=last", cwd=tmp_path)
    run_dir = tmp_path / "logs" / "lstm" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    assert checkpoint["epoch"] == 1 and any("EMA" in key for key in checkpoint["callbacks"])
    assert any(key.startswith("net.features.weight_hh_l0_reverse") for key in checkpoint["state_dict"])

    digit = tmp_path / "digits" / "seven.png"
    digit.parent.mkdir()
    page = Image.new("L", (40, 40), 255)
    page.paste(0, (8, 6, 32, 10))
    page.paste(0, (24, 6, 28, 34))
    page.save(digit)
    run_cli(
        "predict", "--config", str(run_dir / "config.yaml"), f"--ckpt_path={last}",
        f"--data.predict_path={digit.parent}", cwd=tmp_path,
    )  # fmt: skip
    rows = (run_dir / "predictions.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(str(digit))

    exported = run_cli(
        "export", str(last), f"--data.data_dir={fake_mnist}", "--output", str(tmp_path / "x"), cwd=tmp_path
    )
    assert (tmp_path / "x" / "model.onnx").is_file() or list((tmp_path / "x").glob("*.onnx")), exported.stdout
