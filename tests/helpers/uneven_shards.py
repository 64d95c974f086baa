"""Run by tests/test_run_robustness.py under `torch.distributed.run --nproc_per_node 2`: the classification example
with DDP on 16 training images of which the last 4, all in rank 1's shard, are corrupt, one image per batch: rank 1
has 4 batches per epoch, rank 0 has 8; a checkpoint at each epoch's end. Records, per rank, the training steps taken
and the final parameters."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
import run_image_classification as script  # noqa: E402
import served_splits  # noqa: E402

from pvt_hf import training  # noqa: E402

out = Path(sys.argv[1])
served_splits.serve(16, 4, corrupt_from=12)  # contiguous halves per process: rank 1 holds images 8..15
record = {"steps": 0}
backward_step, save_outputs = training.backward_step, training.save_outputs


def counting_backward_step(*args):
    record["steps"] += 1
    return backward_step(*args)


def recording_save_outputs(accelerator, model, processor, args, metrics, task):
    params = {k: v.detach().cpu() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    torch.save(params, out / f"params-{accelerator.process_index}.pt")
    record["skipped"] = metrics["skipped_corrupt_samples"]
    (out / f"record-{accelerator.process_index}.json").write_text(json.dumps(record))
    return save_outputs(accelerator, model, processor, args, metrics, task)


training.backward_step, training.save_outputs = counting_backward_step, recording_save_outputs
tiny = "--image_size 32 --mixup 0 --cutmix 0 --random_erasing 0 --per_device_train_batch_size 1".split()
tiny += "--per_device_eval_batch_size 2 --num_train_epochs 1 --checkpointing_steps epoch --dataset_name x".split()
script.main(["--output_dir", str(out / "run"), *tiny])
