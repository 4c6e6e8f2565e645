"""`make release` / `rollback` / `release-history`: gated releases and @production moves.

The library it calls: stroke_risk.release.publish.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stroke_risk.release import publish
from stroke_risk.release.publish import (
    AUDIT_FILE,
    CHANGELOG_FILE,
    GATES_FILE,
    MODEL_HASH_TAG,
    RELEASED_MODELS,
    RELEASES_FILE,
    STAGE,
    GatesFailed,
    ReleaseError,
    history_lines,
    read_audit,
    release,
    rollback,
)

SUBCOMMANDS = ("release", "rollback", "history")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stroke_risk.commands.release",
        description="Release the trained model (gated), roll `@production` back, or show every "
        "move of `@production`. `python -m stroke_risk.commands.release 1.2.0` is short for "
        "`... release 1.2.0`.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    make = commands.add_parser(
        "release",
        help="check the release gates, then record, tag and move @production (make release)",
        description=publish.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    make.add_argument("version", help="semantic version of the release, e.g. 1.2.0")
    make.add_argument(
        "--override",
        metavar="REASON",
        help=f"release even though gates of {GATES_FILE} fail; the reason and the failed gates "
        f'go into {CHANGELOG_FILE} and {AUDIT_FILE} (make release ... OVERRIDE="reason")',
    )
    make.add_argument("--notes", help=f"Markdown notes for the release's {CHANGELOG_FILE} section")
    make.add_argument(
        "--model",
        choices=sorted(RELEASED_MODELS),
        default="train",
        help="train: the trained model, gated on the test split (default); updated: the update "
        "stage's models/updated/, gated on its held-out outcome labels (MODEL=updated)",
    )
    back = commands.add_parser(
        "rollback",
        help="move @production back to the previous release's model version (make rollback)",
        description="Move @production back to the model version of the release before the "
        "current one (or of --to VERSION); the move is committed to "
        f"{AUDIT_FILE} and {CHANGELOG_FILE} and tagged for GTO (unassign + assign).",
    )
    back.add_argument("--to", metavar="VERSION", help="the release to return to")
    back.add_argument("--reason", help="why (recorded in the audit trail and the CHANGELOG)")
    commands.add_parser(
        "history",
        help=f"print every move of @production from {AUDIT_FILE}, oldest first",
        description=f"Print the audit trail ({AUDIT_FILE}): when, who, from, to, why.",
    )
    for sub in commands.choices.values():
        sub.add_argument("--root", type=Path, default=Path.cwd(), help="project directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] not in SUBCOMMANDS and not arguments[0].startswith("-"):
        arguments.insert(0, "release")  # `python -m stroke_risk.commands.release 1.2.0`
    args = build_parser().parse_args(arguments)
    try:
        if args.command == "history":
            path = args.root / AUDIT_FILE
            text = path.read_text(encoding="utf-8") if path.exists() else ""
            print("\n".join(history_lines(read_audit(text))) or "no alias moves recorded yet")
            return 0
        if args.command == "rollback":
            entry = rollback(root=args.root, to=args.to, reason=args.reason)
            print(
                f"rolled back: @{STAGE} moved from MLflow version {entry['from']} to "
                f"{entry['to']} (release {entry['release']}); {AUDIT_FILE} and {CHANGELOG_FILE} "
                "committed"
            )
            if entry["stage_tags"]:
                print(f"publish it: git push origin HEAD {' '.join(entry['stage_tags'])}")
            return 0
        record = release(
            args.version,
            root=args.root,
            override=args.override,
            notes=args.notes,
            model=args.model,
        )
    except GatesFailed as error:
        print(f"release refused: {error}", file=sys.stderr)
        for line in error.failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    except ReleaseError as error:
        print(f"{args.command} refused: {error}", file=sys.stderr)
        return 1
    if record.get("update"):
        update = record["update"]
        print(
            f"an update ({update['method'].replace('_', ' ')}) of model md5 "
            f"{update['base_model_md5']}, gated on {update['held_out']['labels']} held-out labels"
        )
    print(
        f"released {record['registered_model']} {record['version']}: model md5 "
        f"{record[MODEL_HASH_TAG]}, MLflow version {record['registry_version']} is "
        f"@{STAGE}; tags {record['tag']} and {record['stage_tag']}; "
        f"{CHANGELOG_FILE}, {RELEASES_FILE} and {AUDIT_FILE} committed"
    )
    if record.get("override"):
        failures = [g for g in record["gates"] if not g["passed"]]
        print(
            f"released over {len(failures)} failed gate(s); reason recorded: {record['override']}"
        )
    print(f"publish it: git push origin HEAD {record['tag']} {record['stage_tag']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
