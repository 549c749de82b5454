"""Building blocks shared by the hf-vq models.

Blocks take explicit keyword arguments; configs are unpacked once, in the model's `__init__`. Submodule names
follow diffusers' `Encoder` / `Decoder` (`down_blocks.{i}.resnets.{j}.norm1`, `attentions.{j}.to_q`, ...), so a
VQ-GAN's state dict maps one to one onto `diffusers.VQModel`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}
NORM_EPS = 1e-6  # taming and diffusers' VAEs use 1e-6 in every GroupNorm


class SpatialNorm(nn.Module):
    """GroupNorm whose scale and shift come from the quantized latents (MoVQ, https://arxiv.org/abs/2209.09002).

    Used by the decoder when `norm_type="spatial"` (Kandinsky 2.2's `movq`).
    """

    def __init__(self, num_channels: int, zq_channels: int, *, num_groups: int):
        super().__init__()
        self.norm_layer = nn.GroupNorm(num_groups, num_channels, eps=NORM_EPS)
        self.conv_y = nn.Conv2d(zq_channels, num_channels, kernel_size=1)
        self.conv_b = nn.Conv2d(zq_channels, num_channels, kernel_size=1)

    def forward(self, hidden_states: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        zq = F.interpolate(zq, size=hidden_states.shape[-2:], mode="nearest")
        return self.norm_layer(hidden_states) * self.conv_y(zq) + self.conv_b(zq)


def _norm(num_channels: int, *, num_groups: int, zq_channels: int | None) -> nn.Module:
    if zq_channels is None:
        return nn.GroupNorm(num_groups, num_channels, eps=NORM_EPS)
    return SpatialNorm(num_channels, zq_channels, num_groups=num_groups)


def _apply_norm(norm: nn.Module, hidden_states: torch.Tensor, zq: torch.Tensor | None) -> torch.Tensor:
    return norm(hidden_states, zq) if isinstance(norm, SpatialNorm) else norm(hidden_states)


def _record(stages: list[torch.Tensor] | None, hidden_states: torch.Tensor) -> torch.Tensor:
    """Appends a stage's output to `stages` (for `output_hidden_states`) when collecting; returns it unchanged."""
    if stages is not None:
        stages.append(hidden_states)
    return hidden_states


def _norm_act(norm: nn.Module, act: nn.Module, hidden_states: torch.Tensor, zq: torch.Tensor | None) -> torch.Tensor:
    """norm → activation. Without autograd the activation overwrites the norm's output instead of allocating a
    second full-size tensor (same values: SiLU/ReLU/GELU are elementwise). With autograd it cannot: the activation's
    backward reads its input."""
    hidden_states = _apply_norm(norm, hidden_states, zq)
    if hidden_states.requires_grad or isinstance(act, nn.GELU):
        return act(hidden_states)
    return F.silu(hidden_states, inplace=True) if isinstance(act, nn.SiLU) else F.relu(hidden_states, inplace=True)


class ResnetBlock(GradientCheckpointingLayer):
    """Norm → act → 3×3 conv, twice, with a 1×1 shortcut when the width changes (taming's `ResnetBlock`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm_num_groups: int,
        act_fn: str = "silu",
        dropout: float = 0.0,
        zq_channels: int | None = None,
    ):
        super().__init__()
        self.norm1 = _norm(in_channels, num_groups=norm_num_groups, zq_channels=zq_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = _norm(out_channels, num_groups=norm_num_groups, zq_channels=zq_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nonlinearity = ACTIVATIONS[act_fn]()
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )

    def forward(self, hidden_states: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        residual = hidden_states if self.conv_shortcut is None else self.conv_shortcut(hidden_states)
        hidden_states = self.conv1(_norm_act(self.norm1, self.nonlinearity, hidden_states, zq))
        hidden_states = _norm_act(self.norm2, self.nonlinearity, hidden_states, zq)
        hidden_states = self.conv2(self.dropout(hidden_states))
        # In place: a conv's backward never reads its output, so this saves one full-size tensor per block
        # (diffusers computes `(residual + h) / 1.0`: two more). x + r == r + x exactly in floating point.
        return hidden_states.add_(residual)


class AttentionBlock(GradientCheckpointingLayer):
    """Single-head self-attention over all positions, with a residual connection (taming's `AttnBlock`).

    Runs through `scaled_dot_product_attention`, so the fused kernels are used where the backend has them.
    """

    def __init__(self, channels: int, *, norm_num_groups: int, zq_channels: int | None = None):
        super().__init__()
        if zq_channels is None:
            self.group_norm = nn.GroupNorm(norm_num_groups, channels, eps=NORM_EPS)
            self.spatial_norm = None
        else:  # diffusers' Attention with `spatial_norm_dim` carries only the spatial norm
            self.group_norm = None
            self.spatial_norm = SpatialNorm(channels, zq_channels, num_groups=norm_num_groups)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, hidden_states: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        residual = hidden_states
        if self.spatial_norm is not None:
            hidden_states = self.spatial_norm(hidden_states, zq)
        else:
            hidden_states = self.group_norm(hidden_states)
        batch, channels, height, width = hidden_states.shape
        hidden_states = hidden_states.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)
        query = self.to_q(hidden_states).unsqueeze(1)  # one head: (B, 1, H*W, C)
        key = self.to_k(hidden_states).unsqueeze(1)
        value = self.to_v(hidden_states).unsqueeze(1)
        hidden_states = F.scaled_dot_product_attention(query, key, value).squeeze(1)
        for layer in self.to_out:
            hidden_states = layer(hidden_states)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, channels, height, width)
        return residual + hidden_states


class Downsample(nn.Module):
    """Stride-2 3×3 conv with taming's asymmetric (0, 1, 0, 1) padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(hidden_states, (0, 1, 0, 1)))


class Upsample(GradientCheckpointingLayer):
    """Nearest-neighbour ×2 followed by a 3×3 conv.

    Checkpointed with the blocks: otherwise the conv keeps its 4×-larger upsampled input for the backward pass.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(hidden_states, scale_factor=2.0, mode="nearest"))


class ResolutionBlock(nn.Module):
    """One resolution level: `num_layers` ResNet blocks, each optionally followed by attention, then a resample.

    Encoder levels end in a `Downsample` (`downsamplers`), decoder levels in an `Upsample` (`upsamplers`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_layers: int,
        add_attention: bool,
        resample: str | None,
        norm_num_groups: int,
        act_fn: str,
        dropout: float,
        zq_channels: int | None = None,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock(
                in_channels if i == 0 else out_channels,
                out_channels,
                norm_num_groups=norm_num_groups,
                act_fn=act_fn,
                dropout=dropout,
                zq_channels=zq_channels,
            )
            for i in range(num_layers)
        )
        self.attentions = nn.ModuleList(
            AttentionBlock(out_channels, norm_num_groups=norm_num_groups, zq_channels=zq_channels)
            for _ in range(num_layers if add_attention else 0)
        )
        if resample == "down":
            self.downsamplers = nn.ModuleList([Downsample(out_channels)])
        elif resample == "up":
            self.upsamplers = nn.ModuleList([Upsample(out_channels)])

    def forward(self, hidden_states: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            hidden_states = resnet(hidden_states, zq)
            if self.attentions:
                hidden_states = self.attentions[i](hidden_states, zq)
        for resampler in getattr(self, "downsamplers", ()) or getattr(self, "upsamplers", ()):
            hidden_states = resampler(hidden_states)
        return hidden_states


class MidBlock(nn.Module):
    """ResNet → (attention) → ResNet at the lowest resolution."""

    def __init__(
        self,
        channels: int,
        *,
        add_attention: bool,
        norm_num_groups: int,
        act_fn: str,
        dropout: float,
        zq_channels: int | None = None,
    ):
        super().__init__()
        block = dict(norm_num_groups=norm_num_groups, act_fn=act_fn, dropout=dropout, zq_channels=zq_channels)
        self.resnets = nn.ModuleList(
            [ResnetBlock(channels, channels, **block), ResnetBlock(channels, channels, **block)]
        )
        self.attentions = nn.ModuleList(
            [AttentionBlock(channels, norm_num_groups=norm_num_groups, zq_channels=zq_channels)]
            if add_attention
            else []
        )

    def forward(self, hidden_states: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = self.resnets[0](hidden_states, zq)
        for attention in self.attentions:
            hidden_states = attention(hidden_states, zq)
        return self.resnets[1](hidden_states, zq)


class Encoder(nn.Module):
    """taming / LDM encoder: conv_in → levels (ResNet blocks, attention, downsample) → mid-block → norm → conv_out."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        block_out_channels: list[int],
        down_block_types: list[str],
        layers_per_block: int,
        norm_num_groups: int,
        act_fn: str,
        dropout: float,
        mid_block_add_attention: bool,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList()
        channels = block_out_channels[0]
        for i, block_type in enumerate(down_block_types):
            is_last = i == len(block_out_channels) - 1
            self.down_blocks.append(
                ResolutionBlock(
                    channels,
                    block_out_channels[i],
                    num_layers=layers_per_block,
                    add_attention=block_type.startswith("Attn"),
                    resample=None if is_last else "down",
                    norm_num_groups=norm_num_groups,
                    act_fn=act_fn,
                    dropout=dropout,
                )
            )
            channels = block_out_channels[i]
        self.mid_block = MidBlock(
            channels,
            add_attention=mid_block_add_attention,
            norm_num_groups=norm_num_groups,
            act_fn=act_fn,
            dropout=dropout,
        )
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, channels, eps=NORM_EPS)
        self.conv_act = ACTIVATIONS[act_fn]()
        self.conv_out = nn.Conv2d(channels, out_channels, kernel_size=3, padding=1)

    def forward(self, pixel_values: torch.Tensor, stages: list[torch.Tensor] | None = None) -> torch.Tensor:
        """`stages`, when given, receives the output of conv_in, of each level and of the mid-block."""
        hidden_states = _record(stages, self.conv_in(pixel_values))
        for block in self.down_blocks:
            hidden_states = _record(stages, block(hidden_states))
        hidden_states = _record(stages, self.mid_block(hidden_states))
        return self.conv_out(_norm_act(self.conv_norm_out, self.conv_act, hidden_states, None))


class Decoder(nn.Module):
    """taming / LDM decoder: conv_in → mid-block → levels (ResNet blocks, attention, upsample) → norm → conv_out.

    With `zq_channels` set, every norm is a `SpatialNorm` conditioned on the quantized latents (MoVQ).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        block_out_channels: list[int],
        up_block_types: list[str],
        layers_per_block: int,
        norm_num_groups: int,
        act_fn: str,
        dropout: float,
        mid_block_add_attention: bool,
        zq_channels: int | None = None,
    ):
        super().__init__()
        self.conditions_on_codes = zq_channels is not None
        reversed_channels = list(reversed(block_out_channels))
        self.conv_in = nn.Conv2d(in_channels, reversed_channels[0], kernel_size=3, padding=1)
        common = dict(norm_num_groups=norm_num_groups, act_fn=act_fn, dropout=dropout, zq_channels=zq_channels)
        self.mid_block = MidBlock(reversed_channels[0], add_attention=mid_block_add_attention, **common)
        self.up_blocks = nn.ModuleList()
        channels = reversed_channels[0]
        for i, block_type in enumerate(up_block_types):
            is_last = i == len(block_out_channels) - 1
            self.up_blocks.append(
                ResolutionBlock(
                    channels,
                    reversed_channels[i],
                    num_layers=layers_per_block + 1,
                    add_attention=block_type.startswith("Attn"),
                    resample=None if is_last else "up",
                    **common,
                )
            )
            channels = reversed_channels[i]
        self.conv_norm_out = _norm(channels, num_groups=norm_num_groups, zq_channels=zq_channels)
        self.conv_act = ACTIVATIONS[act_fn]()
        self.conv_out = nn.Conv2d(channels, out_channels, kernel_size=3, padding=1)

    def forward(
        self, hidden_states: torch.Tensor, zq: torch.Tensor | None = None, stages: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """`stages`, when given, receives the output of conv_in, of the mid-block and of each level."""
        hidden_states = _record(stages, self.conv_in(hidden_states))
        hidden_states = _record(stages, self.mid_block(hidden_states, zq))
        for block in self.up_blocks:
            hidden_states = _record(stages, block(hidden_states, zq))
        return self.conv_out(_norm_act(self.conv_norm_out, self.conv_act, hidden_states, zq))


class VQVAEResidualBlock(GradientCheckpointingLayer):
    """ReLU → 3×3 conv → ReLU → 1×1 conv, added to the input (van den Oord et al. 2017, section 4.1)."""

    def __init__(self, channels: int, hidden_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden_channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(hidden_channels, channels, kernel_size=1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.conv2(F.relu(self.conv1(F.relu(hidden_states))))


class VQVAEEncoder(nn.Module):
    """Stride-2 4×4 convolutions, a 3×3 conv, a residual stack and a 3×3 projection to the latent channels."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        residual_hidden_channels: int,
        num_residual_layers: int,
        num_downsample_layers: int,
    ):
        super().__init__()
        self.downsamplers = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else hidden_channels, hidden_channels, kernel_size=4, stride=2, padding=1)
            for i in range(num_downsample_layers)
        )
        self.conv_mid = nn.Conv2d(hidden_channels, hidden_channels, kernel_size=3, padding=1)
        self.residual_stack = nn.ModuleList(
            VQVAEResidualBlock(hidden_channels, residual_hidden_channels) for _ in range(num_residual_layers)
        )
        self.conv_out = nn.Conv2d(hidden_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, pixel_values: torch.Tensor, stages: list[torch.Tensor] | None = None) -> torch.Tensor:
        """`stages`, when given, receives the output of each downsampling conv and of the residual stack."""
        hidden_states = pixel_values
        for conv in self.downsamplers:
            hidden_states = _record(stages, F.relu(conv(hidden_states)))
        hidden_states = self.conv_mid(hidden_states)
        for block in self.residual_stack:
            hidden_states = block(hidden_states)
        return self.conv_out(F.relu(_record(stages, hidden_states)))


class VQVAEDecoder(nn.Module):
    """A 3×3 conv, a residual stack, then stride-2 4×4 transposed convolutions back to pixels."""

    conditions_on_codes = False

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        residual_hidden_channels: int,
        num_residual_layers: int,
        num_upsample_layers: int,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, hidden_channels, kernel_size=3, padding=1)
        self.residual_stack = nn.ModuleList(
            VQVAEResidualBlock(hidden_channels, residual_hidden_channels) for _ in range(num_residual_layers)
        )
        self.upsamplers = nn.ModuleList(
            nn.ConvTranspose2d(hidden_channels, hidden_channels, kernel_size=4, stride=2, padding=1)
            for _ in range(num_upsample_layers - 1)
        )
        # The last transposed conv writes pixels; it is the layer the GAN's adaptive weight reads.
        self.conv_out = nn.ConvTranspose2d(hidden_channels, out_channels, kernel_size=4, stride=2, padding=1)

    def forward(
        self, hidden_states: torch.Tensor, zq: torch.Tensor | None = None, stages: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """`stages`, when given, receives the output of the residual stack and of each upsampling conv but the last."""
        hidden_states = self.conv_in(hidden_states)
        for block in self.residual_stack:
            hidden_states = block(hidden_states)
        hidden_states = _record(stages, hidden_states)
        hidden_states = F.relu(hidden_states)
        for conv in self.upsamplers:
            hidden_states = _record(stages, F.relu(conv(hidden_states)))
        return self.conv_out(hidden_states)
