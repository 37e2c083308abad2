"""`make notebooks`: run the notebooks headless and keep copies with their outputs.

    lit-mnist notebooks notebooks/*.ipynb [--output logs/notebooks] [--timeout 900]

Each notebook runs in a fresh Python kernel of this environment, from its own folder, with this
process's environment (DATA_DIR, LIT_MNIST_RUN, LIT_MNIST_IMAGE). The stored notebooks stay
without outputs; the executed copies go to --output. A failing cell stops that notebook: its
copy is written up to the failure, the error is printed in one line and the exit status is 1.
"""

import sys
import tempfile
from pathlib import Path

from lit_mnist.tools import fail, parser_for
from lit_mnist.tools.progress import Progress


def execute(notebook: Path, output: Path, timeout: int) -> str | None:
    """Run a notebook and write the executed copy; None when every cell ran, else the error."""
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    book = nbformat.read(notebook, as_version=4)
    error = None
    with tempfile.TemporaryDirectory() as sockets:
        # local sockets rather than TCP: nothing listens on the network while a notebook runs
        kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
        client = NotebookClient(
            book, km=kernel, timeout=timeout, resources={"metadata": {"path": str(notebook.parent)}}
        )
        try:
            client.execute()
        except CellExecutionError as err:
            cell = next((i for i, c in enumerate(book.cells) if _failed(c)), None)
            error = f"cell {cell + 1 if cell is not None else '?'}: {err.ename}: {err.evalue}"
        finally:
            if kernel.has_kernel:  # a kernel manager handed to nbclient is ours to stop
                kernel.shutdown_kernel(now=False)
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(book, output)
    return error


def _failed(cell) -> bool:
    return any(out.get("output_type") == "error" for out in cell.get("outputs", []))


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = parser_for(prog, __doc__)
    parser.add_argument("notebooks", type=Path, nargs="+", help="the .ipynb files to run")
    parser.add_argument(
        "--output", type=Path, default=Path("logs/notebooks"), help="folder for the executed copies"
    )
    parser.add_argument("--timeout", type=int, default=900, help="seconds one cell may take")
    args = parser.parse_args(argv)
    missing = [str(n) for n in args.notebooks if not n.is_file()]
    if missing:
        fail(f"no such notebook: {', '.join(missing)}")
    failed = 0
    progress = Progress(len(args.notebooks))
    for notebook in args.notebooks:
        target = args.output / notebook.name
        error = execute(notebook.resolve(), target, args.timeout)
        if error:
            failed += 1
            print(f"error: {notebook} failed at {error} (run up to there in {target})", file=sys.stderr)
        progress.done(f"{notebook} -> {target}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
