"""Run by tests/test_fsdp_prior.py on each rank of `accelerate launch --use_fsdp --fsdp_version 2 --num_processes 2`
on CPU (gloo): `hf-vq train-prior FLAGS`.

    fsdp_prior.py [--kill-at-step-4] FLAGS

With `--kill-at-step-4` the run dies while the checkpoint of step 4 is being written: once every rank has written
its shards into `checkpoint-4.tmp`, and before the checkpoint is marked complete and renamed, each rank sends itself
SIGKILL, as a `kill -9` of the job would.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys

from accelerate import Accelerator

from hf_vq.commands.train_prior import main

KILL_AT = "checkpoint-4.tmp"


def kill_while_saving_step_4():
    save_state = Accelerator.save_state

    def save_then_die(self, output_dir=None, **kwargs):
        result = save_state(self, output_dir, **kwargs)
        if str(output_dir).endswith(KILL_AT):
            self.wait_for_everyone()  # both ranks' shards are on disk, the marker is not
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    Accelerator.save_state = save_then_die


if __name__ == "__main__":
    # A hang (a collective one rank never reaches) prints every thread's stack and exits, instead of a silent timeout.
    faulthandler.dump_traceback_later(float(os.environ.get("HF_VQ_TEST_DEADLINE", "300")), exit=True)
    flags = sys.argv[1:]
    if flags[0] == "--kill-at-step-4":
        kill_while_saving_step_4()
        flags = flags[1:]
    sys.exit(main(flags))
