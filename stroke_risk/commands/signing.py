"""`python -m stroke_risk.commands.signing keygen`: a release signing key pair.

The library it calls: stroke_risk.release.signing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stroke_risk.release.signing import DEFAULT_KEY_PATH, SigningError, keygen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("keygen", help="create a release signing key pair")
    make.add_argument("--out", type=Path, default=DEFAULT_KEY_PATH, help="private key path")
    args = parser.parse_args(argv)
    try:
        public_path = keygen(args.out)
    except SigningError as error:
        print(f"keygen refused: {error}", file=sys.stderr)
        return 1
    print(
        f"private key {args.out.expanduser()} (0600, keep it secret and backed up); "
        f"public key {public_path}: give it to the services as STROKE_TRUSTED_KEY"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
