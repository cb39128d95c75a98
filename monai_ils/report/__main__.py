"""``python -m monai_ils.report structure INPUT OUTPUT``: see ``monai_ils.report.cli``."""

import sys

from monai_ils.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
