"""Training step: ours vs diffusers' `VQModel` on the taming f16/16384 architecture, same weights, data and loss.

    python benchmarks/train_step_speed.py              # CUDA when available (bf16 autocast, channels_last), else CPU
    python benchmarks/train_step_speed.py --gan        # also the full VQ-GAN step (LPIPS + PatchGAN discriminator)

Generator step: forward, L1 reconstruction + VQ loss, backward, AdamW step. Both models use the same weights
(diffusers' loads ours), the same input batch, the same loss code and torch's default AdamW (as diffusers' VQGAN
example builds it); `ours+checkpointing` is ours with `activation_checkpointing_enable()`, and `ours+fused AdamW` is
the step as `hf-vq train` takes it, with torch's fused AdamW kernel. The full VQ-GAN step adds LPIPS-VGG16 and the
hinge GAN loss with the adaptive weight (gradient norms at the decoder's last layer) to the generator step, then a
discriminator step; the LPIPS network and the discriminator are the same modules for both generators. On the CPU the
defaults are a batch of 1 at 64x64 (the full step costs ~1.16 TFLOP per 256x256 image) so each script finishes in a
few minutes.
"""

from __future__ import annotations

import contextlib
import sys

import torch
import torch.nn.functional as F
from common import (
    TAMING_F16_16384,
    PeakMemory,
    base_parser,
    build_one,
    emit,
    environment,
    format_table,
    parse_with_device_defaults,
    pick_device,
    report_worker,
    run_cases,
    time_it,
)

CASES = ["ours", "diffusers", "ours+checkpointing", "ours+fused AdamW"]
GAN_CASES = ["ours GAN", "diffusers GAN"]


def generator_losses(which: str, model, pixel_values: torch.Tensor):
    """Reconstruction and L1 + VQ loss, written once for both models."""
    if which == "ours":
        output = model(pixel_values)
        return output.reconstruction, output.loss
    output = model(pixel_values)  # diffusers: DecoderOutput(sample, commit_loss)
    return output.sample, F.l1_loss(output.sample.float(), pixel_values.float()) + output.commit_loss


def worker(case: str, args) -> None:
    device = pick_device(args.device)
    which = "ours" if case.startswith("ours") else "diffusers"
    channels_last = device.type == "cuda"
    model = build_one(which, TAMING_F16_16384, device, channels_last).train()
    if case == "ours+checkpointing":
        model.activation_checkpointing_enable()
    # torch's default AdamW, as diffusers' VQGAN example builds it, for the like-for-like model comparison;
    # `ours+fused AdamW` is the step as `hf-vq train` takes it (`build_optimizers` picks the fused kernel).
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True if case == "ours+fused AdamW" else None)
    generator = torch.Generator().manual_seed(0)
    pixel_values = (torch.rand(args.batch_size, 3, args.resolution, args.resolution, generator=generator) * 2 - 1).to(
        device
    )
    if channels_last:
        pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    gan = case.endswith("GAN")
    if gan:
        from hf_vq.losses import LPIPS
        from hf_vq.modeling.configuration_discriminator import VQGANDiscriminatorConfig
        from hf_vq.modeling.modeling_discriminator import VQGANDiscriminator

        torch.manual_seed(0)
        perceptual = (
            LPIPS("vgg16", pretrained=False).to(device).requires_grad_(False).eval()
        )  # speed only: weights do not matter
        discriminator = VQGANDiscriminator(VQGANDiscriminatorConfig()).to(device).train()
        if channels_last:
            perceptual = perceptual.to(memory_format=torch.channels_last)
            discriminator = discriminator.to(memory_format=torch.channels_last)
        disc_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=1e-4)
        last_layer = model.decoder.conv_out.weight

    def step():
        with autocast:
            reconstruction, loss = generator_losses(which, model, pixel_values)
            if gan:
                loss = loss + perceptual(reconstruction, pixel_values).mean()
                generator_adv = -discriminator(reconstruction).logits.mean()
                # taming's adaptive weight: balance the GAN gradient against the reconstruction gradient.
                rec_grad = torch.autograd.grad(loss, last_layer, retain_graph=True)[0]
                adv_grad = torch.autograd.grad(generator_adv, last_layer, retain_graph=True)[0]
                weight = (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()
                loss = loss + weight * generator_adv
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if gan:
            with autocast:
                logits_real = discriminator(pixel_values).logits
                logits_fake = discriminator(reconstruction.detach()).logits
                disc_loss = F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean()
            disc_loss.backward()
            disc_optimizer.step()
            disc_optimizer.zero_grad(set_to_none=True)

    memory = PeakMemory(device)
    memory.start()
    step()  # the first step allocates the optimizer state: measured for memory, not for time
    peak = memory.peak_bytes()
    seconds = time_it(step, device, warmup=args.warmup, iters=args.iters)
    report_worker(seconds, peak, args.batch_size)


def main(argv: list[str]) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--gan", action="store_true", help="also time the full VQ-GAN step")
    args, on_gpu = parse_with_device_defaults(
        parser,
        argv,
        gpu=dict(batch_size=16, resolution=256, warmup=3, iters=10),
        cpu=dict(batch_size=1, resolution=64, warmup=1, iters=3),
    )
    if args.worker:
        worker(args.worker, args)
        return 0
    cases = CASES + (GAN_CASES if args.gan else [])
    results = run_cases(__file__, cases, argv, args.repeats)
    precision = "bf16 autocast, channels_last" if on_gpu else "fp32"
    title = (
        f"Training step, taming f16/16384, batch {args.batch_size} at {args.resolution}x{args.resolution}, "
        f"{precision} "
        f"({environment()})"
    )
    reference = {
        "ours": "diffusers",
        "ours+checkpointing": "diffusers",
        "ours+fused AdamW": "diffusers",
        "ours GAN": "diffusers GAN",
    }
    emit(format_table(title, [(case, results[case]) for case in cases], reference), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
