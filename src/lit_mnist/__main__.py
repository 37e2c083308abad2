"""The `lit-mnist` command. --help and --version answer at once, and a tool imports only what it
uses: torch and Lightning are imported for the training subcommands (fit, validate, test,
predict) and the tools that need them."""

import sys
from importlib.metadata import version


def main(argv: list[str] | None = None) -> None:
    from lit_mnist.tools import TOOLS, overview, run_tool  # light: no torch

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
    elif argv[0] == "--version":
        print(f"lit-mnist {version('lit-mnist')}")
    elif argv[0] in TOOLS:
        run_tool(argv[0], argv[1:])
    else:
        from lit_mnist.cli import main as train

        train(argv)


if __name__ == "__main__":
    main()
