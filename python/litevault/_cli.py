"""The ``litevault`` command installed by the wheel: the same command line as the binary."""

import sys

from . import _native


def main() -> None:
    """Runs ``litevault`` with ``sys.argv`` and exits with its exit code."""
    sys.stdout.flush()
    sys.exit(_native.cli_main(["litevault", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
