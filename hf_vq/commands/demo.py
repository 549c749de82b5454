"""`hf-vq demo MODEL_OR_PIPELINE`: a Gradio app in the browser (`hf_vq.demo`): for a tokenizer, Reconstruct, Token
map, Code usage and Token edit; for a pipeline, the same for its tokenizer and Generate. Prints the app's URL and
serves it until Ctrl-C. `--export DIR` writes it as a Hugging Face Space folder instead.

    hf-vq demo my-tokenizer/
    hf-vq demo my-pipeline/ --port 7861 --share
    hf-vq demo my-pipeline/ --export my-space/     # then: python my-space/app.py
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..parsing import CommandParser
from .common import add_device_arguments, check_output_path

INSTALL_HINT = (
    "Install the demo extra: `pip install 'hf-vq[demo]'` (from an hf-vq checkout: `pip install -e '.[demo]'`)."
)


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="hf-vq demo",
        description="Start a Gradio app for a tokenizer (reconstruct, token map, code usage, token edit) or a "
        "pipeline (also generate), or write it as a Hugging Face Space folder with --export.",
    )
    parser.add_argument("model", help="tokenizer or pipeline folder / Hub id (a prior's too, with its tokenizer)")
    parser.add_argument("--port", type=int, default=None, help="port to serve on (default: Gradio's, 7860)")
    parser.add_argument("--share", action="store_true", help="also serve on a public gradio.live URL")
    parser.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="write a Hugging Face Space folder (app.py, requirements.txt pinned to this hf-vq, the model folder) "
        "instead of starting the app",
    )
    add_device_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.export is not None:
        from ..demo.export import export_space

        output = Path(args.export)
        check_output_path(output, "--export")
        files = export_space(args.model, output)
        top_level = ", ".join(name for name in files if "/" not in name)
        print(f"{output}\t{len(files)} files ({top_level}, ...); run it with `python {output / 'app.py'}`")
        return 0
    if importlib.util.find_spec("gradio") is None:
        raise ValueError(f"hf-vq demo needs Gradio, which is not installed. {INSTALL_HINT}")
    from ..demo.app import build_demo, launch

    blocks = build_demo(args.model, device=args.device, trust_remote_code=args.trust_remote_code)
    local_url, share_url = launch(blocks, port=args.port, share=args.share)
    print(f"hf-vq demo of {args.model}: {local_url}" + (f" (public: {share_url})" if share_url else ""), flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    blocks.block_thread()
    return 0
