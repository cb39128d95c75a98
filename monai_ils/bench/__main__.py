"""Dispatch ``python -m monai_ils.bench <name>`` to ``monai_ils.bench.<name>.main``."""

import importlib
import pkgutil
import sys

import monai_ils.bench as package


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    if not argv or argv[0] not in names:
        print(f"usage: python -m monai_ils.bench {{{','.join(names)}}} [options]", file=sys.stderr)
        return 2
    result = importlib.import_module(f"monai_ils.bench.{argv[0]}").main(argv[1:])
    # Benchmarks return their figures (a dict) for callers in Python; only an int is an exit status.
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
