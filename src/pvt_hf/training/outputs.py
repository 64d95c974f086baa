"""The end of a run: the Hub-ready output folder (weights, config, processor, remote code, model card,
all_results.json), then the optional push."""

import json
from pathlib import Path

from accelerate import Accelerator

from ..atomic_output import staged_folder
from ..hub import push_folder, training_card
from ..nonfinite import check_finite_weights


def write_results(output_dir: str, metrics: dict) -> None:
    path = Path(output_dir) / "all_results.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def save_outputs(accelerator: Accelerator, model, processor, args, metrics: dict, task: str) -> None:
    """The Hub-ready folder (weights, config, processor, remote code, model card, all_results.json), then the push."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        check_finite_weights(unwrapped, args.output_dir)
        with staged_folder(Path(args.output_dir)) as staging:  # all written, or the folder left as it was
            unwrapped.save_pretrained(staging)
            processor.save_pretrained(staging)
            write_results(staging, metrics)
            Path(staging, "README.md").write_text(training_card(task, args, metrics))
        if args.push_to_hub:
            repo = args.hub_model_id or Path(args.output_dir).name
            push_folder(args.output_dir, repo, f"Fine-tuned {task} with pvt_hf", token=args.hub_token)
    accelerator.wait_for_everyone()
    accelerator.end_training()
