"""The training loop's pieces, so that the scripts' loops show only what they do: the step plan, the loop's
bookkeeping (`Progress`: step, epoch, corrupt samples, logging, checkpoints), the backward step, BatchNorm on a
one-image batch, the batch-mixing generator, the sum of a count over processes and the evaluation over processes."""

import contextlib
import math
from pathlib import Path
from types import SimpleNamespace

import evaluate
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from .. import lockstep
from ..evaluate_modules import module_path
from ..nonfinite import NonFiniteGuard, check_finite_weights
from ..preemption import Preemption, resume_hint
from ..run_layout import run_layout
from .checkpoints import CHECKPOINT_PREFIX, checkpoint_due, resume, save_checkpoint


def plan_steps(args, train_size: int | None, num_processes: int) -> SimpleNamespace:
    """Optimizer steps per epoch and in all, from the size the dataset reports (no pass over the data).

    Every process takes the same number of steps per epoch (their shards differ by at most one example), so DDP
    never waits on a process that ran out; a smaller last batch trains."""
    if train_size is not None and args.max_train_samples:
        train_size = min(train_size, args.max_train_samples)
    if train_size == 0:
        raise ValueError("the training split is empty")
    if train_size is None:
        if args.max_train_steps is None:
            raise ValueError(
                "the training stream does not report its size, so epochs cannot be counted: pass "
                "--max_train_steps (or --max_train_samples)"
            )
        return SimpleNamespace(steps_per_epoch=None, total_steps=args.max_train_steps)
    per_process = train_size // num_processes
    if per_process == 0:
        raise ValueError(f"the training split has {train_size} example(s), fewer than the {num_processes} processes")
    batches = math.ceil(per_process / args.per_device_train_batch_size)
    steps_per_epoch = math.ceil(batches / args.gradient_accumulation_steps)
    return SimpleNamespace(
        steps_per_epoch=steps_per_epoch,
        total_steps=args.max_train_steps or steps_per_epoch * args.num_train_epochs,
    )


def check_progress(step_before: int, step: int, skipped: int, epoch: int) -> None:
    """After an epoch: an epoch that took no step would repeat forever (an empty split, or every sample corrupt)."""
    if step == step_before:
        reason = (
            f"all {skipped} sample(s) read so far were corrupt" if skipped else "the training split yielded no example"
        )
        raise RuntimeError(
            f"epoch {epoch} took no training step: {reason}. Check the dataset (see the warnings above)."
        )


class Progress:
    """The loop's bookkeeping, so the scripts' loops show only what they do: where the run is (step, epoch, corrupt
    samples skipped), when an epoch or the run ends, logging, and the checkpoints (`--checkpointing_steps`).

        progress = Progress(accelerator, args, plan, "project")   # trackers; restores --resume_from_checkpoint
        for epoch in progress.epochs(model):
            for batch in progress.batches(train_loader(...)):
                ...  # forward, backward, optimizer step
                progress.after_batch(loss, scheduler)
    """

    def __init__(self, accelerator: Accelerator, args, plan, project: str):
        if args.with_tracking:
            accelerator.init_trackers(project, config={k: str(v) for k, v in vars(args).items() if k != "hub_token"})
        self.accelerator, self.args, self.plan = accelerator, args, plan
        self.resumed = resumed = resume(accelerator, args)
        resumed = resumed or {}
        self.step, self.epoch = resumed.get("step", 0), resumed.get("epoch", 0)
        self.epoch_step, self.skipped = resumed.get("epoch_step", 0), resumed.get("skipped", 0)
        self.loader = self.model = self.saved_step = None
        self.guard = NonFiniteGuard(accelerator, args.skip_nonfinite_steps)  # passed to backward_step
        self.preemption = Preemption()
        self.preemption.install()
        self.bar = tqdm(
            total=plan.total_steps, initial=self.step, disable=not accelerator.is_local_main_process, desc="train"
        )

    @property
    def done(self) -> bool:
        return self.step >= self.plan.total_steps

    def epochs(self, model):
        """The epochs to run (from the resumed one), with `model` in training mode."""
        self.model = model
        try:
            while not self.done:
                model.train()
                yield self.epoch
                self.epoch, self.epoch_step = self.epoch + 1, 0
                if checkpoint_due(self.args, self.step, end_of_epoch=True):
                    self._save()
            if self.preemption.received is not None:  # arrived after the last step's check
                self._stop_preempted(saved=self.saved_step == self.step)
        finally:  # also when the loop raises (once this generator is closed)
            self.preemption.restore()
        self.bar.close()

    def batches(self, loader):
        """`loader`'s batches (resumed at the saved position in the resumed epoch), the corrupt-sample counts taken
        out; it ends with the epoch (`plan.steps_per_epoch`, the same on every process), the run, or when any
        process has no batch left (`pvt_hf.lockstep`: no process waits for another forever)."""
        self.loader, step_before, resumed = loader, self.step, self.resumed and self.resumed["epoch"] == self.epoch
        if resumed and self.resumed.get("loader") is not None:
            loader.load_state_dict(self.resumed["loader"])
        for batch in lockstep.in_lockstep(self.accelerator, self._own_batches(loader)):
            self.guard.add_batch(batch.pop("samples"), self.step + 1)
            yield batch
        if not resumed:
            check_progress(step_before, self.step, self.skipped, self.epoch)

    def _own_batches(self, loader):
        per_epoch = self.plan.steps_per_epoch
        for batch in loader:
            if self.done or (per_epoch and self.epoch_step >= per_epoch):  # also a resumed, already full epoch
                return
            self.skipped += batch.pop("skipped")
            if len(batch) > 1:  # more than its "samples"
                yield batch

    def after_batch(self, loss: torch.Tensor, scheduler) -> None:
        """After each batch's optimizer call: on an optimizer step, advance the schedule, log, checkpoint."""
        if not self.accelerator.sync_gradients:
            return
        scheduler.step()
        self.step, self.epoch_step = self.step + 1, self.epoch_step + 1
        self.bar.update(1)
        if self.step % 10 == 0 or self.done:
            lr, last_loss = scheduler.get_last_lr()[0], loss.item()  # one device sync
            self.bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
            if self.args.with_tracking:
                self.accelerator.log(
                    {"train_loss": last_loss, "learning_rate": lr, "epoch": self.epoch}, step=self.step
                )
        saved = checkpoint_due(self.args, self.step, end_of_epoch=False)
        if saved:
            self._save(self.loader)
        if lockstep.any_process(self.accelerator, self.preemption.received is not None):
            self._stop_preempted(saved)

    def _stop_preempted(self, saved: bool):
        """SIGTERM / SIGINT: this step's checkpoint, then exit non-zero saying how to resume."""
        if not saved:
            self._save(self.loader)
        self.bar.close()
        received = self.preemption.received or "a stop signal (on another process)"
        raise SystemExit(
            resume_hint(received, self.step, Path(self.args.output_dir) / f"{CHECKPOINT_PREFIX}{self.step}")
        )

    def _save(self, loader=None):
        state = {"step": self.step, "epoch": self.epoch, "epoch_step": self.epoch_step, "skipped": self.skipped}
        state |= run_layout(self.accelerator.num_processes, self.args)
        check_finite_weights(self.model, Path(self.args.output_dir) / f"{CHECKPOINT_PREFIX}{self.step}")
        save_checkpoint(self.accelerator, self.args.output_dir, state, loader)
        self.saved_step = self.step

    def eval_batches(self, loader):
        """The evaluation loader's lists of examples, its corrupt-sample counts added to `skipped`."""
        for batch in loader:
            self.skipped += batch.pop("skipped")
            if "examples" in batch:  # not a count-only batch (corrupt samples after the last good one)
                yield batch["examples"]

    def skipped_counts(self) -> dict[str, int]:
        """What the run skipped, for all_results.json: corrupt samples over all processes, and the optimizer steps
        skipped for a non-finite loss or gradient (`--skip_nonfinite_steps`; the same on every process)."""
        return {
            "skipped_corrupt_samples": sum_over_processes(self.skipped),
            "skipped_nonfinite_steps": self.guard.skipped_steps,
        }


def backward_step(
    accelerator: Accelerator, model, optimizer, loss: torch.Tensor, max_grad_norm: float | None, guard: NonFiniteGuard
) -> None:
    """Backward, clipping on the accumulation boundary, optimizer step (a no-op between boundaries) unless `guard`
    (`Progress.guard`) finds the loss or gradients non-finite."""
    accelerator.backward(loss)
    grad_norm = None
    if accelerator.sync_gradients and max_grad_norm:
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)  # the guard reuses the norm
    if guard.allows_step(loss, model, grad_norm):
        optimizer.step()
    elif grad_norm is not None and getattr(accelerator, "scaler", None) is not None:
        accelerator.scaler.update()  # clipping unscaled the gradients: close that round as a skipped step would
    optimizer.zero_grad()


@contextlib.contextmanager
def batch_norm_on_running_stats_for_one_sample(model, batch_size: int):
    """A batch of one image (a partial last batch, or --per_device_train_batch_size 1) has one value per channel in
    1x1 maps (UperNet's pooling pyramid, Semantic FPN's stride-32 level of small crops), where BatchNorm's batch
    statistics do not exist and PyTorch raises. For such a batch the BatchNorm layers normalise with their running
    statistics (and do not update them); every process still takes its step, so distributed runs stay in lockstep."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    if batch_size > 1 or not norms:
        yield
        return
    for norm in norms:
        norm.eval()
    try:
        yield
    finally:
        for norm in norms:
            norm.train()


def mixing_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The batch-mixing generator of one optimizer step on one process: a resumed run mixes exactly as before."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 1_009 + rank)


def sum_over_processes(value: int) -> int:
    return sum(gather_object([value]))


def evaluated_over_processes(name: str, samples: list[dict], config_name: str | None = None, **compute_kwargs) -> dict:
    """The evaluate module `name` (`pvt_hf.evaluate_modules`) on every process's `samples`, one dict of the module's
    inputs per sample: gathered with accelerate's `gather_object` (the shards are disjoint, so no sample counts twice),
    added in process order and computed; the same on every process. The samples are compact summaries (a sample's
    best class ids, an image's class histograms), because evaluate keeps every input it is given."""
    module = evaluate.load(module_path(name), config_name, keep_in_memory=True)
    gathered = gather_object(samples)
    inputs = {key: [sample[key] for sample in gathered] for key in module._feature_names()}
    if not gathered:  # nothing to evaluate (e.g. every sample corrupt): evaluate's compute cannot run on no input
        return module._compute(**inputs, **compute_kwargs)
    module.add_batch(**inputs)
    return module.compute(**compute_kwargs)
