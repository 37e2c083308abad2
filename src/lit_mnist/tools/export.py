"""`make export CKPT=<checkpoint>`: the net as ONNX and TorchScript, checked against PyTorch on the
checkpoint's own test set.

    lit-mnist export logs/best/version_0/checkpoints/last.ckpt [--data.root=DIR] [--tolerance 1e-4]

Writes <stem>.onnx and <stem>.torchscript.pt (stem: the checkpoint's name) into the run's export/
folder, then runs PyTorch, TorchScript and ONNX Runtime on every test image of the data the
checkpoint was trained on and fails (exit 1) when a logit differs from PyTorch's by more than
--tolerance. Prints the file sizes, the largest differences and the accuracies, and keeps them in
<stem>.json beside the files.

That data is rebuilt from the run's config.yaml (<run>/config.yaml for <run>/checkpoints/x.ckpt):
MNIST, FashionMNIST, KMNIST or an image folder, its test split read at the checkpoint's image shape
as `lit-mnist test` reads it. --data flags, spelled as in `lit-mnist fit`, override config.yaml
(--data.data_dir=DIR or --data.root=DIR where the data has moved); a checkpoint without a
config.yaml needs them: --data.data_dir=DIR [--data.dataset=FashionMNIST] for the MNIST family,
--data=lit_mnist.data.ImageFolderDataModule --data.root=DIR for an image folder.

Both files take float32 images (N, C, H, W) with pixel values in [0, 1], of the shape the
checkpoint's DataSpec gives (MNIST: 1x28x28, a light digit on a dark background centred as in
MNIST, which lit_mnist.data.images.load_digit makes from image files, divide by 255; an image
folder: 1 or 3 channels at its size, as ImageFolderDataModule reads the images), for any N; they
return logits (N, classes). The normalisation of the training data is inside them.
"""

import importlib.util
import json
import sys
import time
import warnings
from argparse import ArgumentError
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentParser
from torch import Tensor, nn

from lit_mnist.data import DataError, DataSpec, ImageDataModule, preset_spec
from lit_mnist.errors import ParameterError, UserError
from lit_mnist.tools import fail, parser_for
from lit_mnist.tools.progress import Progress
from lit_mnist.tools.runs import load_model, run_dir_of

TOLERANCE = 1e-4
BATCH = 1000
# a run without config.yaml: the data `lit-mnist fit` trains on unless told otherwise
DEFAULT_DATA = {"class_path": "lit_mnist.data.MNISTDataModule"}
# looked for before anything is written: a missing one must not leave half an export behind
NEEDED = {"onnxscript": "ONNX export", "onnxruntime": "checking the ONNX file"}


class Deployable(nn.Module):
    """The trained net with its data's normalisation in front: [0, 1] pixels in, logits out."""

    def __init__(self, net: nn.Module, data: DataSpec) -> None:
        super().__init__()
        self.net, self.data = net, data
        # buffers, so the exporters trace them as constants of the graph
        self.register_buffer("mean", torch.tensor(data.mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(data.std).view(-1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.net((images - self.mean) / self.std)


def deployable(checkpoint: Path) -> Deployable:
    """The checkpoint's net in float32 on the CPU, contiguous (not channels-last), in eval mode."""
    model = load_model(checkpoint)
    net = model.net.float().to(memory_format=torch.contiguous_format)
    return Deployable(net, model.data).eval()


def export_onnx(model: nn.Module, path: Path, example: Tensor) -> Path:
    """One self-contained .onnx file (weights inside), batch size left free."""
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes={"images": {0: batch}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return path


def export_torchscript(model: nn.Module, path: Path, example: Tensor) -> Path:
    """A traced TorchScript file, loadable with torch.jit.load without this package. torch marks
    TorchScript as deprecated: the ONNX file is the one to build on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, example)
        traced.save(str(path))
    return path


def onnx_runner(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def torchscript_runner(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(path), map_location="cpu").eval()
    return scripted


def pixels(images: Tensor) -> Tensor:
    """uint8 images as the exported files take them: float32 in [0, 1]."""
    return images.float() / 255


@torch.inference_mode()
def outputs(run, images: Tensor) -> Tensor:
    """Logits of uint8 images in batches of BATCH, the last one smaller, and the first image alone
    too (a batch of one is where a fixed batch size would show). Scaled a batch at a time: a float
    copy of a whole test set of large colour images would not fit in memory."""
    batches = [run(pixels(images[i : i + BATCH])) for i in range(0, len(images), BATCH)]
    single = run(pixels(images[:1]))
    return torch.cat([*batches, single]).float()


def compare(reference: Tensor, candidates: dict[str, Tensor], labels: Tensor, tolerance: float) -> dict:
    """Largest absolute logit difference to the reference and accuracy of each output; `ok` is
    False where a difference exceeds the tolerance (or is not finite)."""
    n = len(labels)
    report = {"pytorch": {"accuracy": float((reference[:n].argmax(1) == labels).float().mean())}}
    for name, logits in candidates.items():
        if logits.shape != reference.shape:
            shapes = f"output shape {tuple(logits.shape)}, PyTorch's {tuple(reference.shape)}"
            report[name] = {"error": shapes}
            report[name].update(max_abs_diff=float("inf"), accuracy=float("nan"), ok=False)
            continue
        diff = float((logits - reference).abs().max())
        report[name] = {
            "max_abs_diff": diff,
            "accuracy": float((logits[:n].argmax(1) == labels).float().mean()),
            "predictions_differ": int((logits[:n].argmax(1) != reference[:n].argmax(1)).sum()),
            "ok": diff <= tolerance,  # False for NaN too
        }
    return report


def check_packages() -> None:
    for module, purpose in NEEDED.items():
        if importlib.util.find_spec(module) is None:
            raise UserError(f"{purpose} needs {module}: pip install 'lit-mnist[export]'")


def split_data_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the --data flags, each with its value also where given apart as in `--data.root DIR`, the
    rest): so that such a value is never taken for the checkpoint."""
    data, rest = [], []
    args = iter(argv)
    for arg in args:
        if arg == "--data" or arg.startswith(("--data.", "--data=")):
            data.append(arg)
            if "=" not in arg and (value := next(args, None)) is not None:
                data.append(value)
        else:
            rest.append(arg)
    return data, rest


def saved_data(config: Path) -> dict:
    """The data section of a run's config.yaml."""
    try:
        data = yaml.safe_load(config.read_text()).get("data")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        data = None
    if not isinstance(data, dict) or "class_path" not in data:
        raise UserError(
            f"{config} is not a run's config.yaml with a data section: give the checkpoint's data with "
            "--data flags, as for lit-mnist fit"
        )
    return data


def own_data(checkpoint: Path, spec: DataSpec, flags: list[str]) -> tuple[ImageDataModule, dict]:
    """The datamodule the checkpoint was trained on, set up: as its run's config.yaml describes it,
    with the --data flags over that, reading the images at the checkpoint's shape (`spec`) as
    `lit-mnist test` does. And where it came from, for the report."""
    run = run_dir_of(checkpoint)
    config = run / "config.yaml" if run is not None else None
    if config is not None and config.is_file():
        saved, source = saved_data(config), f"{config}{' and the --data flags' * bool(flags)}"
    elif flags:
        saved, source = DEFAULT_DATA, "the --data flags"
    else:
        where = f"{run} has no config.yaml" if run else f"{checkpoint} is not in a run's checkpoints/ folder"
        raise UserError(
            f"{where} to say what data the checkpoint was trained on: give it with --data flags, "
            "--data.data_dir=DIR [--data.dataset=FashionMNIST] for the MNIST family, "
            "--data=lit_mnist.data.ImageFolderDataModule --data.root=DIR for an image folder"
        )
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--data", type=ImageDataModule)
    try:
        parser.set_defaults(data=saved)
        parsed = parser.parse_args(flags)
    except (ArgumentError, ImportError, TypeError, ValueError) as err:
        # jsonargparse spreads one reason over several indented lines
        raise UserError(f"the data of {source} cannot be rebuilt: {' '.join(str(err).split())}") from None
    try:
        with preset_spec(spec):
            datamodule = parser.instantiate(parsed).data
        datamodule.setup("test")
    except ParameterError as err:
        flag = f"--data.{err.parameter}"
        given = any(f.split("=")[0] == flag for f in flags)
        hint = f" (as {config} says; {flag}=... overrides it)" if config is not None and not given else ""
        raise UserError(f"{flag} {err.problem}{hint}") from None
    except DataError as err:
        raise UserError(str(err)) from None
    return datamodule, {"source": source, "description": datamodule.describe(), **parsed.as_dict()["data"]}


def export(checkpoint: Path, data_flags: list[str], output: Path | None, tolerance: float) -> dict:
    checkpoint = Path(checkpoint)
    if output is None:
        output = (run_dir_of(checkpoint) or checkpoint.parent) / "export"
    check_packages()
    model = deployable(checkpoint)
    datamodule, data = own_data(checkpoint, model.data, data_flags)
    images, labels = datamodule.images[datamodule.test_idx], datamodule.labels[datamodule.test_idx]
    if not len(labels):
        raise UserError(f"the test split of {data['source']} holds no images to check the export on")
    output.mkdir(parents=True, exist_ok=True)
    stem = checkpoint.stem
    # two images: torch.export would fix a batch dimension of one as a constant
    example = pixels(images[:1]).repeat(2, 1, 1, 1)
    started = time.perf_counter()
    steps = Progress(5)
    files = {"onnx": export_onnx(model, output / f"{stem}.onnx", example)}
    steps.done("ONNX export")
    files["torchscript"] = export_torchscript(model, output / f"{stem}.torchscript.pt", example)
    steps.done("TorchScript export")
    exported_seconds = time.perf_counter() - started
    reference = outputs(model, images)
    steps.done("PyTorch check")
    candidates = {"torchscript": outputs(torchscript_runner(files["torchscript"]), images)}
    steps.done("TorchScript check")
    candidates["onnx"] = outputs(onnx_runner(files["onnx"]), images)
    steps.done("ONNX Runtime check")
    report = compare(reference, candidates, labels, tolerance)
    for name, path in files.items():
        report[name].update(file=str(path), bytes=path.stat().st_size)
    report["checkpoint"] = str(checkpoint)
    report["data"] = data
    report["test_images"] = len(labels)
    report["tolerance"] = tolerance
    report["export_seconds"] = round(exported_seconds, 2)
    spec = model.data
    report["input"] = f"images: float32 (N, {', '.join(map(str, spec.shape))}), pixels in [0, 1]"
    report["output"] = f"logits: float32 (N, {spec.num_classes})"
    (output / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary(report: dict) -> str:
    lines = [
        f"checked on {report['test_images']} test images (tolerance {report['tolerance']:g}); "
        f"PyTorch float32 accuracy {100 * report['pytorch']['accuracy']:.2f}%",
        f"data ({report['data']['source']}): {report['data']['description']}",
        f"{'format':<12} {'size':>9} {'max |diff|':>11} {'accuracy':>9}  {'check':<6}  file",
    ]
    for name in ("onnx", "torchscript"):
        entry = report[name]
        lines.append(
            f"{name:<12} {entry['bytes'] / 1e6:7.2f}MB {entry['max_abs_diff']:11.2e} "
            f"{100 * entry['accuracy']:8.2f}%  {'ok' if entry['ok'] else 'FAILED':<6}  {entry['file']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = parser_for(prog, __doc__)
    parser.add_argument("checkpoint", type=Path, help="a checkpoint (a run's checkpoints/*.ckpt)")
    parser.add_argument("--output", type=Path, help="folder for the files (default: <run>/export)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest logit difference allowed")
    data_flags, argv = split_data_flags(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not args.tolerance >= 0:
        fail(f"--tolerance must be 0 or more, got {args.tolerance}")
    try:
        report = export(args.checkpoint, data_flags, args.output, args.tolerance)
    except UserError as err:
        fail(str(err))
    print(summary(report))
    failed = [name for name in ("onnx", "torchscript") if not report[name]["ok"]]
    if failed:
        sys.exit(
            f"error: {' and '.join(failed)} output differs from PyTorch's by more than {args.tolerance:g} "
            "(the files are kept for inspection)"
        )


if __name__ == "__main__":
    main()
