"""`make export CKPT=<checkpoint>`: the net as ONNX and TorchScript, checked against PyTorch.

    lit-mnist export logs/best/version_0/checkpoints/last.ckpt [--data.data_dir=data] [--tolerance 1e-4]

Writes <stem>.onnx and <stem>.torchscript.pt (stem: the checkpoint's name) into the run's export/
folder, then runs PyTorch, TorchScript and ONNX Runtime on every MNIST test image and fails (exit 1)
when a logit differs from PyTorch's by more than --tolerance. Prints the file sizes, the largest
differences and the accuracies, and keeps them in <stem>.json beside the files.

Both files take float32 images (N, C, H, W) with pixel values in [0, 1], of the shape the
checkpoint's DataSpec gives (MNIST: one channel, a light digit on a dark background centred as
in MNIST; lit_mnist.data.images.load_digit makes such digits from image files, divide by 255), for
any N; they return logits (N, classes). The normalisation of the training data is inside them.
"""

import json
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from lit_mnist.data import DataSpec, MNISTDataModule, load_split
from lit_mnist.errors import UserError
from lit_mnist.tools import add_data_dir, fail, parser_for
from lit_mnist.tools.progress import Progress
from lit_mnist.tools.runs import load_model, run_dir_of

TOLERANCE = 1e-4
BATCH = 1000


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
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it; say so before it does)
    except ImportError:
        raise UserError("ONNX export needs onnx and onnxscript: pip install 'lit-mnist[export]'") from None
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
    try:
        import onnxruntime
    except ImportError:
        raise UserError("checking the ONNX file needs onnxruntime: pip install 'lit-mnist[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def torchscript_runner(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(path), map_location="cpu").eval()
    return scripted


@torch.inference_mode()
def outputs(run, images: Tensor) -> Tensor:
    """Logits of float [0, 1] images in batches of BATCH, the last one smaller, and the first image
    alone too (a batch of one is where a fixed batch size would show)."""
    batches = [run(images[i : i + BATCH]) for i in range(0, len(images), BATCH)]
    single = run(images[:1])
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


def export(checkpoint: Path, data_dir: Path, output: Path | None, tolerance: float) -> dict:
    checkpoint = Path(checkpoint)
    if output is None:
        output = (run_dir_of(checkpoint) or checkpoint.parent) / "export"
    model = deployable(checkpoint)
    MNISTDataModule(data_dir=str(data_dir)).prepare_data()  # a clear error, or the download
    images, labels = load_split(data_dir, "test")
    images = images.unsqueeze(1).float() / 255
    output.mkdir(parents=True, exist_ok=True)
    stem = checkpoint.stem
    example = images[:2]
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
    report["test_images"] = len(labels)
    report["tolerance"] = tolerance
    report["export_seconds"] = round(exported_seconds, 2)
    data = model.data
    report["input"] = f"images: float32 (N, {', '.join(map(str, data.shape))}), pixels in [0, 1]"
    report["output"] = f"logits: float32 (N, {data.num_classes})"
    (output / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary(report: dict) -> str:
    lines = [
        f"checked on {report['test_images']} test images (tolerance {report['tolerance']:g}); "
        f"PyTorch float32 accuracy {100 * report['pytorch']['accuracy']:.2f}%",
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
    add_data_dir(parser)
    parser.add_argument("--output", type=Path, help="folder for the files (default: <run>/export)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest logit difference allowed")
    args = parser.parse_args(argv)
    if not args.tolerance >= 0:
        fail(f"--tolerance must be 0 or more, got {args.tolerance}")
    try:
        report = export(args.checkpoint, Path(args.data_dir), args.output, args.tolerance)
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
