"""Any nn.Module as the net: torchvision.models, timm.create_model and a user's own class, filled
from the data, trained, resumed, predicted with and exported like the template's own nets."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from conftest import ROOT, SMALL, run_cli
from lit_mnist.data import SPEC, DataSpec
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import ConvNet, StockNet, build_net
from lit_mnist.optim import GroupSettings, head_of, param_groups
from lit_mnist.tools.runs import load_model
from test_folder import make_folder
from user_nets import Embedder, PlainNet

timm = pytest.importorskip("timm")

RGB = DataSpec(channels=3, height=20, width=24, num_classes=2, mean=(0.5,) * 3, std=(0.25,) * 3)


def n_outputs(net: nn.Module, data: DataSpec) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(net.eval()(torch.zeros(3, *data.shape)).shape)


@pytest.mark.parametrize("data", [SPEC, RGB], ids=["gray-10", "rgb-2"])
@pytest.mark.parametrize(
    "target, kwargs",
    [
        ("torchvision.models.resnet18", {}),
        ("timm.create_model", {"model_name": "test_resnet"}),
        (PlainNet, {"width": 4}),
    ],
    ids=["torchvision", "timm", "plain"],
)
def test_classes_and_channels_come_from_the_data(target, kwargs, data):
    net, spec = build_net(StockNet(target, kwargs), data)
    assert n_outputs(net, data) == (3, data.num_classes)
    first_conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == data.channels
    # the checkpoint's entry rebuilds the same net
    rebuilt, _ = build_net(spec, data)
    assert [p.shape for p in rebuilt.state_dict().values()] == [p.shape for p in net.state_dict().values()]


def test_arguments_given_are_kept_and_a_wrong_count_is_refused():
    _, spec = build_net(StockNet(PlainNet, {"width": 4, "in_channels": 1}), SPEC)
    assert spec["init_args"] == {"in_channels": 1, "num_classes": 10, "width": 4}
    with pytest.raises(
        ValueError, match=r"one value per class, 10 per image, for 1x28x28 images; it gave \(2, 7\)"
    ):
        build_net(StockNet(PlainNet, {"num_classes": 7}), SPEC)
    with pytest.raises(ValueError, match=r"one value per class.*it gave \(2, 7\)"):
        build_net(Embedder, SPEC)


def test_pretrained_rgb_weights_read_gray_images_and_get_a_head_for_the_data():
    """torchvision refuses num_classes with pretrained weights: the net is built with its own head,
    which is then replaced; the RGB filters of the first convolution are summed for gray images."""
    reference = torchvision.models.resnet18()

    def pretrained_resnet18(*, weights: str | None = None, num_classes: int = 1000) -> nn.Module:
        net = torchvision.models.resnet18(num_classes=num_classes)
        if weights is not None:
            assert num_classes == 1000, "pretrained weights come with 1000 classes"
            net.load_state_dict(reference.state_dict())
        return net

    net, spec = build_net(StockNet(pretrained_resnet18, {"weights": "IMAGENET1K_V1"}), SPEC)
    assert net.fc.out_features == 10 and net.conv1.in_channels == 1
    torch.testing.assert_close(net.conv1.weight, reference.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(net.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    # a checkpoint rebuilds it without downloading the weights again: its state_dict brings them
    assert spec["init_args"] == {"weights": None, "num_classes": 10}
    assert StockNet(pretrained_resnet18, {"weights": "x"}, weights=False).arguments(SPEC)["weights"] is None


def test_the_classifier_group_finds_each_kind_of_head():
    resnet, _ = build_net(StockNet("torchvision.models.resnet18"), SPEC)
    assert head_of(resnet) is resnet.fc
    vit, _ = build_net(
        StockNet("timm.create_model", {"model_name": "test_vit"}), DataSpec(1, 32, 32, 10, (0.5,), (0.25,))
    )
    assert head_of(vit) is vit.get_classifier()
    plain, _ = build_net(StockNet(PlainNet), SPEC)
    assert head_of(plain) is plain.out  # the last nn.Linear
    assert head_of(ConvNet(SPEC)).__class__ is nn.Sequential
    convs_only = nn.Sequential(nn.Conv2d(1, 10, 28), nn.Flatten())
    assert head_of(convs_only) is None
    assert {g["name"] for g in param_groups(convs_only, GroupSettings(), GroupSettings())} == {
        "features",
        "features_no_decay",
    }
    with pytest.raises(ValueError, match="has no classifier to set apart"):
        param_groups(convs_only, GroupSettings(), GroupSettings(lr_mult=0.1))


def test_a_python_user_passes_the_class_or_function_itself():
    model = MNISTClassifier(SPEC, net=torchvision.models.resnet18)
    assert model.net.fc.out_features == 10 and model.net.conv1.in_channels == 1
    assert model.hparams.net == {
        "class_path": "torchvision.models.resnet.resnet18",
        "init_args": {"num_classes": 10},
    }
    assert isinstance(MNISTClassifier(SPEC, net=ConvNet).net, ConvNet)
    # a factory whose first argument is the spec, whatever its name, is called with it
    built = MNISTClassifier(SPEC, net=lambda spec: ConvNet(spec, hidden=8)).net
    assert isinstance(built, ConvNet) and built.classifier[2].out_features == 8
    assert isinstance(MNISTClassifier(SPEC, net=PlainNet).net.out, nn.Linear)  # built with its defaults


TINY = [
    "--trainer.limit_val_batches=1",
    "--trainer.log_every_n_steps=1",
    "--data.batch_size=16",
    "--auto_precision=false",
    "--last_checkpoint.every_n_steps=1",
    "--test_after_fit=false",
    *SMALL,
]


def png(path: Path, shape: tuple[int, ...]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory) -> Path:
    counts = {"train": {"cat": 10, "dog": 10}, "test": {"cat": 3, "dog": 3}}
    return make_folder(tmp_path_factory.mktemp("rgb") / "data", counts, shape=(20, 24), rgb=True)


CASES = {
    "torchvision": ["--model.net=torchvision.models.resnet18"],
    # as on timm's own command lines: its model arguments pass through create_model's **kwargs
    "timm": [
        "--model.net=timm.create_model",
        "--model.net.model_name=test_resnet",
        "--model.net.drop_rate=0.1",
    ],
    "plain": ["--model.net=user_nets.PlainNet", "--model.net.width=4"],
}


@pytest.mark.parametrize("case", CASES)
def test_a_stock_net_trains_resumes_predicts_and_exports(case, fork_server, fake_mnist, rgb_folder, tmp_path):
    """timm on an RGB image folder (two classes), the others on MNIST's gray digits."""
    if case == "timm":
        data = [
            "--config",
            str(ROOT / "configs/experiments/folder.yaml"),
            f"--data.root={rgb_folder}",
            "--data.val_size=4",
        ]
        shape, classes = (20, 24, 3), 2
    else:
        data = [f"--data.data_dir={fake_mnist}"]
        shape, classes = (28, 28), 10
    base = ["fit", "--config", str(ROOT / "configs/default.yaml"), *CASES[case], *TINY, *data]
    first = fork_server.run([*base, "--trainer.max_steps=2"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = (tmp_path / "logs").glob("*/version_0")
    config = (run / "config.yaml").read_text()
    assert f"num_classes: {classes}" in config  # filled from the data, written down
    if case == "timm":
        assert "drop_rate: 0.1" in config and "in_chans: 3" in config

    resumed = fork_server.run([*base, "--trainer.max_steps=4", "--ckpt_path", "last"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(list((tmp_path / "logs").glob("*/version_*"))) == 1
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4

    image = png(tmp_path / "in" / "one.png", shape)
    predicted = fork_server.run(
        [
            "predict",
            "--config",
            str(run / "config.yaml"),
            "--ckpt_path",
            str(last),
            f"--data.predict_path={image}",
        ],
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    with (run / "predictions.csv").open() as file:
        (row,) = list(csv.DictReader(file))
    model = load_model(last)
    assert model.net.__class__ is not ConvNet and model.data.num_classes == classes

    exported = fork_server.run(["export", str(last)], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    report = json.loads((run / "export" / "last.json").read_text())
    assert report["onnx"]["ok"] and report["torchscript"]["ok"], report
    assert row["file"].endswith("one.png")


@pytest.mark.parametrize(
    "flags, env, message",
    [
        (
            ["--model.net=timm.create_model", "--model.net.model_name=no_such_net"],
            {},
            "Unknown model (no_such_net)",
        ),
        (["--model.net=user_nets.Embedder"], {}, "must give one value per class, 10 per image"),
        (
            [
                "--model.net=timm.create_model",
                "--model.net.model_name=resnet10t",
                "--model.net.pretrained=true",
            ],
            {"HF_HUB_OFFLINE": "1"},
            "--model.net timm.create_model cannot be built:",
        ),
        (
            ["--model.net=timm.create_model", "--model.net.model_name=test_resnet", "--model.net.drop=1"],
            {},
            "--model.net timm.create_model cannot be built: ",
        ),
        (
            ["--model.net=torchvision.models.resnet18", "--model.net.drop=1"],
            {},
            "cannot be built: ResNet.__init__() got an unexpected keyword argument 'drop'",
        ),
        (  # as a config file would give it
            [
                '--model.net={"class_path": "timm.create_model", "init_args": {"model_name": "x", '
                '"in_chans": 1}}'
            ],
            {},
            "Option 'in_chans' is not accepted (in a config file, what a function passes on through **kwargs",
        ),
    ],
    ids=[
        "unknown-timm-name",
        "not-one-value-per-class",
        "needs-a-download",
        "unknown-timm-argument",
        "unknown-argument",
        "kwargs-in-init-args",
    ],
)
def test_a_net_that_cannot_be_used_is_one_line_exit_2_nothing_written(
    flags, env, message, fake_mnist, fork_server, tmp_path, monkeypatch
):
    args = [
        "fit",
        "--config",
        str(ROOT / "configs/default.yaml"),
        f"--data.data_dir={fake_mnist}",
        *SMALL,
        *flags,
    ]
    if env:  # read at import: a process of its own
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        result = run_cli(*args, cwd=tmp_path, check=False)
    else:
        result = fork_server.run(args, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and message in lines[-1], result.stderr[-3000:]
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "logs").exists()
