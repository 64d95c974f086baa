"""Run by tests/test_run_robustness.py under `torch.distributed.run --nproc_per_node 2`: the classification example
with DDP on 32 small images, 2 per batch, each step slowed by 0.2 s so that a SIGTERM sent after the first checkpoint
lands mid-run. Each rank writes its process id (`pid-<rank>`): the test signals every process, as a cluster does.
Arguments: the folder to write in (the run in `run/`), then more of the script's arguments."""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
import run_image_classification as script  # noqa: E402
import served_splits  # noqa: E402

from pvt_hf import training  # noqa: E402

out = Path(sys.argv[1])
served_splits.serve(32, 4)
(out / f"pid-{os.environ['RANK']}").write_text(str(os.getpid()))
backward_step = training.backward_step


def slow_backward_step(*args):
    time.sleep(0.2)
    return backward_step(*args)


training.backward_step = slow_backward_step
tiny = "--image_size 32 --mixup 0 --cutmix 0 --random_erasing 0 --per_device_train_batch_size 2".split()
tiny += "--per_device_eval_batch_size 2 --max_train_steps 10 --checkpointing_steps 3 --dataset_name x".split()
script.main(["--output_dir", str(out / "run"), *tiny, *sys.argv[2:]])
