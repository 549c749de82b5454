"""The `hf-vq` subcommands, one module each, on transformers' `commands/` pattern: each module builds its parser
(`build_parser()`) and runs (`main(argv) -> int`) over library functions, and prints what it produced (results, file
paths, a commit URL). `hf_vq.cli` imports a module only when its command runs and is the one place errors are
printed. `common.py` holds what several commands share: the model arguments, the dataset flags and the output-path
check.
"""
