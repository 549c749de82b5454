"""`hf-vq push FOLDER REPO_ID`: a saved model folder to the Hub in one commit (`hf_vq.hub.push_folder`), its card
re-rendered first so its snippets name the repo. Prints the commit URL, or with `--dry-run` the files. With `--space`,
the model's demo goes up as a Gradio Space instead (`hf-vq demo FOLDER --export`'s folder)."""

from __future__ import annotations

from ..parsing import CommandParser


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="hf-vq push",
        description="Upload a saved model folder (weights, config, model card, sample grid, discriminator) to the "
        "Hub in one commit. The card is re-rendered first so its snippets name the repo.",
    )
    parser.add_argument("folder", help="model folder written by save_pretrained / hf-vq train")
    parser.add_argument("repo_id", help="Hub repo, e.g. org/name (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--revision", default=None, help="branch to push to")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    parser.add_argument("--no-card-update", action="store_true", help="upload the card as it is")
    parser.add_argument(
        "--remote-code",
        action="store_true",
        help="also upload the modeling code (auto_map), so the model loads with transformers alone "
        "(AutoModel.from_pretrained(repo, trust_remote_code=True))",
    )
    parser.add_argument(
        "--space",
        action="store_true",
        help="upload the model's demo as a Gradio Space to REPO_ID instead (hf-vq demo FOLDER --export's folder: "
        "app.py, requirements.txt pinned to this hf-vq, the model)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded, upload nothing")
    return parser


def push_space(args, parser) -> int:
    """`--space`: the demo's Space folder, written to a temporary folder, then listed or uploaded."""
    import tempfile
    from pathlib import Path

    from ..demo.export import export_space
    from ..hub.push import push_space_folder

    model_only = [flag for flag, given in MODEL_ONLY_FLAGS.items() if getattr(args, given)]
    if model_only:
        parser.error(
            f"--space uploads the demo as one new commit to a Space; {', '.join(model_only)} only apply to a model's "
            "upload. Leave them out."
        )
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "space"
        files = export_space(args.folder, folder)
        if args.dry_run:
            print("\n".join(files))
            return 0
        commit = push_space_folder(
            folder, args.repo_id, commit_message=args.commit_message, private=args.private or None, token=args.token
        )
    print(commit.commit_url)
    return 0


# Flags of a model's upload that a Space's commit does not take: flag -> argparse name.
MODEL_ONLY_FLAGS = {
    "--revision": "revision",
    "--create-pr": "create_pr",
    "--no-card-update": "no_card_update",
    "--remote-code": "remote_code",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.space:
        return push_space(args, parser)
    from ..hub import push_folder, upload_file_list

    if args.dry_run:  # with --remote-code: the .py files it would add too (nothing is written)
        for name in upload_file_list(args.folder, remote_code=args.remote_code):
            print(name)
        return 0
    commit = push_folder(
        args.folder,
        args.repo_id,
        commit_message=args.commit_message,
        private=args.private or None,
        token=args.token,
        revision=args.revision,
        create_pr=args.create_pr,
        update_card=not args.no_card_update,
        remote_code=args.remote_code,
    )
    print(commit.commit_url)
    return 0
