"""Stopping and running again as a user does (issue #27): Ctrl-C (a real SIGINT), the same command run again, a
finished run resumed for nothing, a split smaller than a batch, the words of the summary and of `--resolution`."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import shlex
import signal
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from hf_vq.cli import main as cli
from hf_vq.commands.train import repeat_main_job
from hf_vq.training import parse_args
from hf_vq.training.checkpointing import COMPLETE_MARKER, TrainingState
from hf_vq.training.monitoring import log_summary
from hf_vq.training.stopping import interruption
from hf_vq.training.tokenizer import TOKENIZER_TYPES, new_model_config

from helpers import tiny_train_flags, write_random_images

REPO_ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def train_flags(output_dir, images, *extra):
    run = ["--dataset-name", str(images), "--lr-warmup-steps", "0", "--eval-steps", "0", "--image-logging-steps", "0"]
    return tiny_train_flags(output_dir, *run, *extra, model_type="vqvae")


def run_in_child(argv: list[str], log: Path) -> None:
    """`hf-vq ARGV` in a forked child (this process has imported everything already), its output in `log`."""
    status = 3
    try:
        torch.set_num_threads(1)  # as DataLoader workers do: OpenMP's thread pool does not survive a fork
        with open(log, "w", buffering=1) as stream:
            os.dup2(stream.fileno(), 1)
            os.dup2(stream.fileno(), 2)
            sys.stdout = sys.stderr = stream
            for handler in list(logging.getLogger().handlers):  # pytest's: the run configures its own logging
                logging.getLogger().removeHandler(handler)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own: Ctrl-C raises KeyboardInterrupt
            status = cli(argv)
    finally:
        os._exit(status)


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_checkpoint_and_prints_the_command_that_continues_it(tmp_path, capsys, caplog):
    images = tmp_path / "images"
    write_random_images(images, 4)
    run = tmp_path / "run"
    argv = ["train", *train_flags(run, images, "--max-train-steps", "100000", "--checkpointing-steps", "2")]
    log = tmp_path / "train.log"
    child = multiprocessing.get_context("fork").Process(target=run_in_child, args=(argv, log))
    child.start()
    deadline = time.perf_counter() + 60
    while not (run / "checkpoint-2" / COMPLETE_MARKER).is_file():
        assert child.is_alive() and time.perf_counter() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
    child.join(timeout=30)
    text = log.read_text()
    assert child.exitcode == 130, text[-3000:]

    # One line, no traceback: the step, the checkpoint kept, the command that continues.
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    lines = [line for line in text.splitlines() if "Ctrl-C" in line]  # on a line of its own: the bar has ended
    assert len(lines) == 1, text[-3000:]
    pattern = r"hf-vq train: stopped by Ctrl-C at step (\d+); kept the last checkpoint, (\S+)\. Continue with: "
    said = re.fullmatch(pattern + "(.*)", lines[0])
    assert said, lines[0]
    kept = Path(said.group(2))
    assert kept.parent == run and (kept / COMPLETE_MARKER).is_file() and int(said.group(1)) >= 2
    command = shlex.split(said.group(3))
    assert command[:2] == ["hf-vq", "train"]
    assert command[-4:] == ["--output-dir", str(run), "--resume-from-checkpoint", "latest"]

    # The printed command continues from the kept checkpoint (one more step, so that the test ends).
    step = int(kept.name.split("-")[1])
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="hf_vq.training.checkpointing"):
        assert cli([*command[1:], "--max-train-steps", str(step + 1)]) == 0
    assert f"Resuming from {kept}" in caplog.text
    assert (run / "config.json").is_file() and not [p for p in run.iterdir() if p.name.endswith(".tmp")]

    # The run is finished: resuming it for no more steps is refused, and nothing in the folder changes (#27: it used
    # to "train" 0 steps and rewrite its card).
    before = snapshot(run)
    assert cli([*command[1:], "--max-train-steps", str(step + 1)]) == 2
    err = capsys.readouterr().err
    assert f"{run} holds a finished run, trained for {step + 1} steps, and --max-train-steps {step + 1}" in err
    assert f"--resume-from-checkpoint latest --max-train-steps N above {step + 1}" in err
    assert snapshot(run) == before


def test_ctrl_c_before_the_first_checkpoint_and_in_commands_that_do_not_say_what_they_kept(
    tmp_path, monkeypatch, capsys
):
    # Before the first checkpoint: nothing kept, and the same folder is used again.
    args = parse_args(["--output-dir", str(tmp_path / "run")])
    interrupt = interruption(args, 3)
    assert interrupt.continue_flags == {"--output-dir": str(tmp_path / "run")}
    monkeypatch.setattr("hf_vq.commands.train.main", lambda argv: (_ for _ in ()).throw(interrupt))
    assert cli(["train", "--max-train-steps", "9"]) == 130
    assert capsys.readouterr().err == (
        "hf-vq train: stopped by Ctrl-C at step 3, before the first checkpoint: nothing was kept. Start again with: "
        f"hf-vq train --max-train-steps 9 --output-dir {tmp_path / 'run'}\n"
    )
    monkeypatch.setenv("WORLD_SIZE", "2")  # under `accelerate launch`: rank 0 says it once, naming the launcher
    monkeypatch.setenv("RANK", "1")
    assert cli(["train"]) == 130 and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert cli(["train"]) == 130
    assert capsys.readouterr().err.endswith(
        f"Start again with: accelerate launch [its flags] -m hf_vq.cli train --output-dir {tmp_path / 'run'}\n"
    )
    monkeypatch.delenv("WORLD_SIZE")

    # tokenize and generate: the command line says what was kept.
    def stopped(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr("hf_vq.commands.tokenize.main", stopped)
    monkeypatch.setattr("hf_vq.commands.generate.main", stopped)
    assert cli(["tokenize", "model", "--output", "my tokens"]) == 130
    assert capsys.readouterr().err == (
        "hf-vq tokenize: stopped by Ctrl-C; the shards finished so far are kept. The same command continues after "
        "them: hf-vq tokenize model --output 'my tokens'\n"
    )
    assert cli(["generate", "pipeline"]) == 130
    assert capsys.readouterr().err == "hf-vq generate: stopped by Ctrl-C; nothing was written.\n"
    with pytest.raises(KeyboardInterrupt):  # --debug: the traceback, as for any error
        cli(["generate", "pipeline", "--debug"])


def fake_checkpoint(folder: Path, step: int, config) -> None:
    checkpoint = folder / f"checkpoint-{step}"
    config.save_pretrained(checkpoint / "model")
    (checkpoint / COMPLETE_MARKER).write_text("{}")


def test_the_main_job_run_again_continues_or_reuses_the_numbered_folders(tmp_path, monkeypatch):
    """#27: an interrupted `-4` that had written checkpoint-20 was left for a fresh `-5` from step 0, and a `-2`
    stopped before its first checkpoint for a new `-3`."""
    monkeypatch.chdir(tmp_path)
    outputs = tmp_path / "outputs"
    (outputs / "hf-vq-train").mkdir(parents=True)
    (outputs / "hf-vq-train" / "config.json").write_text("{}")  # the first run finished
    (outputs / "hf-vq-train-2" / "logs").mkdir(parents=True)  # stopped before its first checkpoint
    args, message = repeat_main_job(parse_args([]))
    assert args.output_dir == "outputs/hf-vq-train-2" and args.resume_from_checkpoint is None
    assert (
        message
        == "outputs/hf-vq-train-2 holds a run stopped before its first checkpoint: this run starts again there."
    )

    (outputs / "hf-vq-train-2" / "config.json").write_text("{}")  # it finished; -3 is another model's
    fake_checkpoint(outputs / "hf-vq-train-3", 10, new_model_config(TOKENIZER_TYPES["vqvae"], parse_args([])))
    fake_checkpoint(outputs / "hf-vq-train-4", 20, new_model_config(TOKENIZER_TYPES["vqgan"], parse_args([])))
    args, message = repeat_main_job(parse_args([]))
    assert args.output_dir == "outputs/hf-vq-train-4" and args.resume_from_checkpoint == "latest"
    assert (
        "outputs/hf-vq-train-4 holds an unfinished run of the same model: continuing it from checkpoint-20" in message
    )

    (outputs / "hf-vq-train-4" / "config.json").write_text("{}")  # all finished or another model's: the next one
    args, message = repeat_main_job(parse_args([]))
    assert args.output_dir == "outputs/hf-vq-train-5" and args.resume_from_checkpoint is None
    assert (
        "outputs/hf-vq-train to outputs/hf-vq-train-4 hold earlier runs: this run writes to outputs/hf-vq-train-5"
        in (message)
    )
    assert not (outputs / "hf-vq-train-5").exists()  # deciding writes nothing


def test_fewer_images_than_a_batch_names_the_count_and_the_fix_and_writes_nothing(tmp_path, capsys):
    images = tmp_path / "images"
    write_random_images(images, 3)
    fresh = tmp_path / "fresh"
    flags = train_flags(
        fresh, images, "--max-train-steps", "2", "--train-batch-size", "4", "--report-to", "tensorboard"
    )
    assert cli(["train", *flags]) == 2
    err = capsys.readouterr().err
    assert (
        f"The training split of {images} (train) holds 3 images, fewer than one batch of --train-batch-size 4 (a "
        "batch is never padded). Give --train-batch-size 3 or less, or more images. Nothing was written." in err
    )
    assert not fresh.exists()  # not even logs/ (#27)
    # A folder that was there already stays as it was: no logs/ left in it.
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    assert cli(["train", *flags, "--output-dir", str(existing)]) == 2
    assert "holds 3 images" in capsys.readouterr().err
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_words_a_user_reads(capsys, caplog):
    # --resolution names the nearest valid size, as the README promises.
    with pytest.raises(SystemExit):
        parse_args(["--resolution", "30"])
    assert "--resolution must be a multiple of 8" in (err := capsys.readouterr().err)
    assert "got 30. The nearest valid size: --resolution 32." in err
    with pytest.raises(SystemExit):
        parse_args(["--resolution", "28"])
    assert "The nearest valid sizes: --resolution 24 or 32." in capsys.readouterr().err

    # The summary counts in the singular when there is one.
    state = TrainingState(global_step=1, images_seen=1, skipped_records=1, empty_batches=1, nonfinite_steps=1)
    args = types.SimpleNamespace(report_to="none")
    with caplog.at_level(logging.INFO, logger="hf_vq.training.monitoring"):
        log_summary(args, Path("out"), state, 60.0, has_grid=False, model_class="VQGANModel")
        state = TrainingState(global_step=2, images_seen=2, skipped_records=2, empty_batches=2, nonfinite_steps=2)
        log_summary(args, Path("out"), state, 60.0, has_grid=False, model_class="VQGANModel")
    first, second = [record.getMessage().splitlines()[0] for record in caplog.records]
    assert first == (
        "Done: 1 step in 1.0 min (1 image, 1 unreadable record skipped, 1 batch without a readable image skipped, "
        "1 non-finite step skipped)."
    )
    assert second == (
        "Done: 2 steps in 1.0 min (2 images, 2 unreadable records skipped, 2 batches without a readable image "
        "skipped, 2 non-finite steps skipped)."
    )


def test_the_readme_vqvae2_example_loads_the_folder_its_command_trains_into():
    """#27: it loaded outputs/hf-vq-train, which holds the main job's VQ-GAN after `make train`."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("### VQ-VAE-2: two grids\n", 1)[1].split("\n## ", 1)[0]
    command = shlex.split(re.search(r"```bash\n(.*?)```", section, re.S).group(1), comments=True)
    folder = re.search(r'VQVAE2Model\.from_pretrained\("([^"]+)"\)', section).group(1)
    assert command[:4] == ["hf-vq", "train", "--model-type", "vqvae2"]
    assert command[command.index("--output-dir") + 1] == folder != "outputs/hf-vq-train"
