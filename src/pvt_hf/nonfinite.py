"""Non-finite losses and gradients (a bad label or box, an fp16 overflow, a diverging run) never train on silently:
the step stops the run with an error naming it and its samples, or, opted in, is skipped and counted; weights holding
a NaN or an infinity are never written."""

import torch


class NonFiniteStepError(FloatingPointError):
    """A training step whose loss or gradients were NaN or infinite."""


class NonFiniteWeightsError(FloatingPointError):
    """Weights holding a NaN or an infinity, which are not written."""


class NonFiniteGuard:
    """Decides, on every optimizer step, whether it may update the weights.

    `add_batch(samples, step)` names the samples of each batch (this process's, of the optimizer step `step`);
    `allows_step(loss, model, grad_norm)`, called after the backward pass, records whether the loss was finite and,
    on the accumulation boundary, whether the gradients are (not under a gradient scaler: fp16's scaler skips
    overflowing steps itself, and its gradients are scaled). All processes agree (one reduction of a single number),
    so they step or stop together. A bad step raises `NonFiniteStepError`, or with `skip` is not taken and is counted
    in `skipped_steps`."""

    def __init__(self, accelerator, skip: bool):
        self.accelerator, self.skip = accelerator, skip
        self.skipped_steps = 0
        self.samples, self.step, self.bad_loss = [], None, None

    def add_batch(self, samples: list, step: int) -> None:
        self.samples += samples
        self.step = step

    def allows_step(self, loss: torch.Tensor, model, grad_norm: torch.Tensor | None = None) -> bool:
        """`grad_norm`: the gradients' total norm where the step already computed it (clipping), so that it is not
        computed twice; a NaN or inf anywhere in the gradients makes it non-finite."""
        finite = torch.isfinite(loss.detach()).all()
        self.bad_loss = ~finite if self.bad_loss is None else self.bad_loss | ~finite
        if not self.accelerator.sync_gradients:
            return True
        bad = self.bad_loss.float()
        if getattr(self.accelerator, "scaler", None) is None:
            if grad_norm is None:
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                grad_norm = torch.nn.utils.get_total_norm(grads) if grads else None
            if grad_norm is not None:
                bad = bad + (~torch.isfinite(torch.as_tensor(grad_norm))).float()
        if self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad.reshape(1), "sum")
        bad_loss, samples = self.bad_loss, self.samples
        self.samples, self.bad_loss = [], None
        if not bad.item():  # the one device sync of the check
            return True
        bad_loss = bool(bad_loss.item())
        what = "loss" if bad_loss else "gradients" if self.accelerator.num_processes == 1 else "loss or gradients"
        if not self.skip:
            raise NonFiniteStepError(
                f"training step {self.step}: non-finite {what} (NaN or inf). This process's samples of that step: "
                f"{samples}. Check them (labels, boxes) and the learning rate / mixed precision; "
                "--skip_nonfinite_steps skips such steps instead (counted in all_results.json)."
            )
        self.skipped_steps += 1
        return False


def check_finite_weights(model: torch.nn.Module, target) -> None:
    """Raise (naming `target` and the parameters) when `model`'s floating-point weights hold a NaN or an infinity."""
    bad = [n for n, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise NonFiniteWeightsError(
            f"not writing {target}: {len(bad)} weight tensor(s) hold NaN or inf (first: {bad[:3]})"
        )
