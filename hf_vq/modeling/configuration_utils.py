"""Fields shared by every hf-vq tokenizer config: the quantizer, its losses and the pixel range; and the model-type
check every hf-vq config makes on load (`ModelTypeCheckMixin`).

`VQGANConfig` and `VQVAEConfig` inherit from `BaseVQConfig`; the architecture fields live in each of them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import typing
from typing import Any, Literal

from huggingface_hub.dataclasses import strict, type_validator
from transformers import PreTrainedConfig

QUANTIZER_TYPES = ("vq", "fsq", "lfq", "residual_vq")

# What every quantizer option meant before it existed: plain nearest-code VQ with a gradient-trained codebook.
# `from_dict` fills these in for fields absent from a stored config.json, so changing a dataclass default (the
# recommendation for new training) never changes what an existing checkpoint means.
LEGACY_QUANTIZER_FIELDS: dict[str, Any] = {
    "quantizer_type": "vq",
    "codebook_update": "loss",
    "kmeans_init": False,
    "codebook_dim": None,
    "codebook_l2_norm": False,
    "dead_code_restart": False,
    "entropy_loss_weight": 0.0,
    "gradient_estimator": "straight_through",
    "fsq_levels": None,
    "num_quantizers": 1,
}

# The quantizer setting recommended for NEW training, measured in benchmarks/results/quantizer_defaults.md
# (best PSNR at K = 16384 on real photos at equal steps: 17.6 dB against 14.9 dB for plain VQ, 9.5% of the codebook
# in use against 0.3%). The dataclass defaults stay plain VQ: converters build configs in code and rely on them, and
# k-means on by default would overwrite a converted codebook at the first fine-tuning step. Training entry points
# merge this dict into the fields of the models they create: `VQGANConfig(**RECOMMENDED_QUANTIZER_FIELDS, ...)`.
RECOMMENDED_QUANTIZER_FIELDS: dict[str, Any] = {"kmeans_init": True, "dead_code_restart": True}

# `fsq_levels` suggestions from Mentzer et al. 2023 (table 1) and exact powers of two, keyed by codebook size.
FSQ_LEVEL_SUGGESTIONS = {
    256: [8, 6, 5],
    1024: [8, 5, 5, 5],
    4096: [7, 5, 5, 5, 5],
    16384: [8, 8, 8, 8, 4],
    65536: [8, 8, 8, 5, 5, 5],
}


def config_error(field: str, expected: str, received: Any, fix: str) -> ValueError:
    """A `ValueError` that names the field, what it expected, what it received and how to fix it."""
    return ValueError(f"`{field}` must be {expected}; got {received!r}. {fix}")


@functools.cache
def _declared_field_types(cls: type) -> dict[str, Any]:
    """The annotations hf-vq's config classes declare (not `PreTrainedConfig`'s), evaluated. These modules use
    `from __future__ import annotations`, so the annotations are strings that `@strict` skips: checked here."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not issubclass(klass, PreTrainedConfig) or klass is PreTrainedConfig:
            continue
        namespace = vars(sys.modules[klass.__module__])
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
    return hints


def _expected_type(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return f"one of {list(typing.get_args(hint))}"
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    return "of type " + text.replace("typing.", "").replace("NoneType", "None").replace(" | ", " or ")


def check_field_types(config: PreTrainedConfig) -> None:
    """Checks every field hf-vq declares against its annotation, before anything compares or iterates it, so a
    JSON/YAML value of the wrong type (`num_vq_embeddings: "many"`, `block_out_channels: 8`) is named with the
    type it needs instead of failing deep inside (`'<' not supported between instances of 'str' and 'int'`)."""
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for name, hint in _declared_field_types(type(config)).items():
        value = getattr(config, name)
        try:
            type_validator(name, value, hint)
        except TypeError:
            example = defaults.get(name)
            example = list(example) if isinstance(example, tuple) else example
            fix = f"Give a value of that type, e.g. {example!r} (the default)." if example is not None else ""
            raise config_error(name, _expected_type(hint), value, fix or "Give a value of that type.") from None


class ModelTypeCheckMixin:
    """Refuses a stored config of another model type. transformers only warns and goes on, so that
    `VQGANModel.from_pretrained(a_prior_folder)` returned a VQ-GAN of random weights behind a page-long load report.
    List it before the transformers config base."""

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs):
        stored = config_dict.get("model_type")
        if stored is not None and stored != cls.model_type:
            architectures = list(config_dict.get("architectures") or [])
            holds = f"`{stored}` model" + (f" ({', '.join(architectures)})" if architectures else "")
            load = f"`{architectures[0]}.from_pretrained`" if architectures else "its own class"
            raise ValueError(
                f"The config holds a {holds}, not the `{cls.model_type}` that {cls.__name__} reads. Load it with "
                f"{load}, or with `transformers.AutoModel.from_pretrained` after `import hf_vq.modeling` (it picks "
                "the class from the config)."
            )
        return super().from_dict(config_dict, **kwargs)


@strict(accept_kwargs=True)
class BaseVQConfig(ModelTypeCheckMixin, PreTrainedConfig):
    r"""
    Fields common to all hf-vq image tokenizers. Not used on its own: see [`VQGANConfig`] and [`VQVAEConfig`].

    The quantizer fields default to plain VQ, so a config means the same whether or not it names them (and a
    config.json written before an option existed loads with the option off). For new training, use
    `RECOMMENDED_QUANTIZER_FIELDS` (k-means init + dead-code restart: the best of `benchmarks/quantizer_defaults.py`).

    Args:
        in_channels (`int`, *optional*, defaults to 3):
            Number of image channels the encoder reads (3 for RGB, 1 for grayscale).
        out_channels (`int`, *optional*, defaults to 3):
            Number of image channels the decoder writes.
        latent_channels (`int`, *optional*):
            Channels of the encoder's output before `quant_conv` (diffusers' `latent_channels`).
        num_vq_embeddings (`int`, *optional*):
            Codebook size K: token ids are in `[0, num_vq_embeddings)`.
        vq_embed_dim (`int`, *optional*):
            Dimension D of each code. Defaults to `latent_channels`.
        pixel_range (`tuple[float, float]`, *optional*, defaults to `(-1.0, 1.0)`):
            Range of the pixel values the model takes and returns. Images in `[0, 1]` map to it linearly.
        quantizer_type (`str`, *optional*, defaults to `"vq"`):
            Which quantizer sits between encoder and decoder:
            `"vq"`: nearest-code vector quantisation (van den Oord et al. 2017, https://arxiv.org/abs/1711.00937);
            `"fsq"`: finite scalar quantisation (Mentzer et al. 2023, https://arxiv.org/abs/2309.15505), no
            codebook to learn, `num_vq_embeddings` = product of `fsq_levels`;
            `"lfq"`: lookup-free quantisation (Yu et al. 2023, https://arxiv.org/abs/2310.05737), each of the
            log2(K) channels is a sign bit, `num_vq_embeddings` a power of two;
            `"residual_vq"`: `num_quantizers` VQs, each quantizing what the previous ones left (Zeghidour et al.
            2021, https://arxiv.org/abs/2107.03312); token ids have shape `(B, h, w, num_quantizers)`.
        codebook_update (`str`, *optional*, defaults to `"loss"`):
            `"vq"`/`"residual_vq"`: how codes move. `"loss"` trains them with the codebook term; `"ema"` sets each code
            to an exponential moving average of the encoder outputs assigned to it (van den Oord et al. 2017,
            appendix A.1), and the codebook term is then 0 and the codebook has no gradient.
        ema_decay (`float`, *optional*, defaults to 0.99):
            Decay γ of the EMA statistics.
        ema_epsilon (`float`, *optional*, defaults to 1e-5):
            Laplace smoothing ε of the EMA code counts, so a code that receives nothing is never divided by zero.
        kmeans_init (`bool`, *optional*, defaults to `False`):
            Initialise the codebook by k-means on the first training batch's encoder outputs
            (https://arxiv.org/abs/2107.03312, section 3.2). Done once; a `kmeans_done` buffer remembers it.
        kmeans_iters (`int`, *optional*, defaults to 10):
            Lloyd iterations of that k-means.
        codebook_dim (`int`, *optional*):
            Dimension of the codes if lower than `vq_embed_dim`: latents are projected in (a linear layer) before
            the search and the codes projected out after it (ViT-VQGAN, https://arxiv.org/abs/2110.04627 section
            3.2; LlamaGen, https://arxiv.org/abs/2406.06525, 8-d codes use > 95% of K = 16384). `None`: no projection.
        codebook_l2_norm (`bool`, *optional*, defaults to `False`):
            l2-normalise latents and codes before the search (cosine similarity; ViT-VQGAN section 3.2).
        codebook_usage_window (`int`, *optional*, defaults to 100):
            Training steps over which `running_usage` is measured; a code unused for this many steps is dead.
        dead_code_restart (`bool`, *optional*, defaults to `False`):
            Re-seed dead codes with random encoder outputs of the current batch (Jukebox,
            https://arxiv.org/abs/2005.00341 section 2.3; Zeghidour et al. 2021).
        entropy_loss_weight (`float`, *optional*, defaults to 0.0):
            Weight of the entropy term `H(p(code | z)) − H(mean p(code))` that makes each assignment confident
            and spreads the batch over the codebook (MaskGIT/MAGVIT, https://arxiv.org/abs/2310.05737 eq. 5;
            LlamaGen). For `"lfq"` the paper uses 0.1. Costs a (tokens, K) matrix per step.
        entropy_temperature (`float`, *optional*, defaults to 0.01):
            Temperature of the softmax over negative distances in that term.
        gradient_estimator (`str`, *optional*, defaults to `"straight_through"`):
            `"vq"`/`"residual_vq"`: how gradients cross the quantizer. `"straight_through"` copies them
            (`z + sg[e − z]`); `"rotation"` rotates and rescales `z` onto its code with a rotation treated as a
            constant, so gradients keep the angle between `z` and `e` (Fifty et al. 2024,
            https://arxiv.org/abs/2410.06424).
        fsq_levels (`list[int]`, *optional*):
            `"fsq"`: number of levels of each quantized channel; their product must equal `num_vq_embeddings`.
        num_quantizers (`int`, *optional*, defaults to 1):
            `"residual_vq"`: number of stacked VQs (each with K codes and the options above).
        commitment_cost (`float`, *optional*, defaults to 0.25):
            β, the weight of the commitment term `‖z − sg[e]‖²` that pulls encoder outputs to their codes.
        codebook_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the codebook term `‖sg[z] − e‖²` that pulls codes to encoder outputs.
        beta_placement (`str`, *optional*, defaults to `"commitment"`):
            Which term β multiplies. `"commitment"` is the VQ-VAE objective. `"codebook"` reproduces
            taming-transformers and diffusers' `legacy=True` quantizer, which put β on the codebook term;
            converted checkpoints set it so their original losses are reproduced.
        quantizer_chunk_size (`int`, *optional*, defaults to 8192):
            Rows of encoder outputs whose distances to all K codes are computed at once. Memory of the
            nearest-code search is `O(quantizer_chunk_size * K)` instead of `O(N * K)`; results do not depend on it.
        lookup_from_codebook (`bool`, *optional*, defaults to `False`):
            diffusers' `VQModel` field: if `True`, `decode(h, force_not_quantize=True, shape=...)` treats `h` as token
            ids (aMUSEd); if `False`, as already-quantized latents.
        reconstruction_loss_type (`str`, *optional*, defaults to `"mse"`):
            Pixel loss reported by `forward`: `"mse"` or `"l1"`.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation used by layers that are initialised from a normal distribution.
    """

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 256
    num_vq_embeddings: int = 16384
    vq_embed_dim: int | None = None
    pixel_range: list[float | int] | tuple[float | int, float | int] = (-1.0, 1.0)
    quantizer_type: Literal["vq", "fsq", "lfq", "residual_vq"] = "vq"
    codebook_update: Literal["loss", "ema"] = "loss"
    ema_decay: float | int = 0.99
    ema_epsilon: float | int = 1e-5
    kmeans_init: bool = False
    kmeans_iters: int = 10
    codebook_dim: int | None = None
    codebook_l2_norm: bool = False
    codebook_usage_window: int = 100
    dead_code_restart: bool = False
    entropy_loss_weight: float | int = 0.0
    entropy_temperature: float | int = 0.01
    gradient_estimator: Literal["straight_through", "rotation"] = "straight_through"
    fsq_levels: list[int] | tuple[int, ...] | None = None
    num_quantizers: int = 1
    commitment_cost: float | int = 0.25
    codebook_loss_weight: float | int = 1.0
    beta_placement: Literal["commitment", "codebook"] = "commitment"
    quantizer_chunk_size: int = 8192
    lookup_from_codebook: bool = False
    reconstruction_loss_type: Literal["mse", "l1"] = "mse"
    initializer_range: float | int = 0.02

    def __post_init__(self, **kwargs):
        check_field_types(self)
        self.pixel_range = [float(v) for v in self.pixel_range]
        if self.fsq_levels is not None:
            self.fsq_levels = [int(v) for v in self.fsq_levels]
        if self.vq_embed_dim is None:
            self.vq_embed_dim = self.latent_channels
        super().__post_init__(**kwargs)
        self.validate_vq_fields()

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs):
        """`PreTrainedConfig.from_dict`, reading quantizer fields absent from `config_dict` as plain VQ.

        A config.json written before an option existed meant the plain quantizer; the dataclass default is the
        recommendation for *new* models and may differ, so absent fields take `LEGACY_QUANTIZER_FIELDS` instead.
        """
        config_dict = dict(config_dict)
        for name, value in LEGACY_QUANTIZER_FIELDS.items():
            if name not in config_dict and name not in kwargs:
                config_dict[name] = value
        return super().from_dict(config_dict, **kwargs)

    @property
    def codebook_size(self) -> int:
        """Number of distinct token ids (K)."""
        return self.num_vq_embeddings

    @property
    def downsampling_factor(self) -> int:
        """Ratio between the image side and the finest token grid's side (each architecture's config says its own)."""
        raise NotImplementedError

    @property
    def image_multiple(self) -> int:
        """What image sides (`sample_size` included) must be divisible by, as the model's `token_layout` says: the
        downsampling factor of a single grid (a hierarchical config says its own)."""
        return self.downsampling_factor

    def architecture_description(self) -> str:
        """One line on the encoder / decoder for the model card (each architecture's config says its own)."""
        return ""

    def codebook_description(self) -> str:
        """One line on the codebook for the model card."""
        size = f"{self.num_vq_embeddings:,}"
        if self.quantizer_type == "fsq":
            return f"{size} implicit codes: levels {list(self.fsq_levels)} per channel, nothing learned"
        if self.quantizer_type == "lfq":
            return f"{size} implicit codes: {int(math.log2(self.num_vq_embeddings))} sign bits, nothing learned"
        dims = f"{self.vq_embed_dim} dims"
        if self.codebook_dim is not None:
            dims = f"{self.codebook_dim} dims (projected from {self.vq_embed_dim})"
        levels = f" at each of {self.num_quantizers} residual levels" if self.quantizer_type == "residual_vq" else ""
        return f"{size} codes × {dims}{levels}"

    def quantizer_description(self) -> str:
        """One line on the quantizer and its options for the model card."""
        kind = self.quantizer_type
        if kind == "fsq":
            return "`fsq`: finite scalar quantisation (Mentzer et al. 2023), rounding each channel to its levels"
        if kind == "lfq":
            return f"`lfq`: lookup-free quantisation (Yu et al. 2023), entropy weight {self.entropy_loss_weight:g}"
        beta_on = "commitment" if self.beta_placement == "commitment" else "codebook (taming / diffusers legacy)"
        parts = [
            "nearest-code search" + (" on l2-normalised codes" if self.codebook_l2_norm else ""),
            "EMA codebook updates" if self.codebook_update == "ema" else "codebook trained by its loss",
            f"β = {self.commitment_cost:g} on the {beta_on} term",
            "rotation-trick gradients" if self.gradient_estimator == "rotation" else "straight-through gradients",
        ]
        if self.dead_code_restart:
            parts.append("dead-code restarts")
        if self.entropy_loss_weight:
            parts.append(f"entropy loss {self.entropy_loss_weight:g}")
        return f"`{kind}`: " + ", ".join(parts)

    def quantizer_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `build_quantizer` for this config's one quantizer: the config's fields unpacked
        in exactly one place (`build_quantizer(**config.quantizer_kwargs())`)."""
        return dict(
            quantizer_type=self.quantizer_type,
            codebook_size=self.num_vq_embeddings,
            embed_dim=self.vq_embed_dim,
            usage_window=self.codebook_usage_window,
            fsq_levels=self.fsq_levels,
            num_quantizers=self.num_quantizers,
            commitment_cost=self.commitment_cost,
            codebook_loss_weight=self.codebook_loss_weight,
            beta_placement=self.beta_placement,
            chunk_size=self.quantizer_chunk_size,
            codebook_update=self.codebook_update,
            ema_decay=self.ema_decay,
            ema_epsilon=self.ema_epsilon,
            kmeans_init=self.kmeans_init,
            kmeans_iters=self.kmeans_iters,
            codebook_dim=self.codebook_dim,
            l2_norm=self.codebook_l2_norm,
            dead_code_restart=self.dead_code_restart,
            entropy_loss_weight=self.entropy_loss_weight,
            entropy_temperature=self.entropy_temperature,
            gradient_estimator=self.gradient_estimator,
        )

    def validate_vq_fields(self) -> None:
        """Checks the shared fields. Subclasses call it from their own validation."""
        for name in ("in_channels", "out_channels", "latent_channels", "num_vq_embeddings", "vq_embed_dim"):
            value = getattr(self, name)
            if value < 1:
                raise config_error(name, "a positive integer", value, f"Set `{name}` to at least 1.")
        if len(self.pixel_range) != 2 or self.pixel_range[0] >= self.pixel_range[1]:
            raise config_error(
                "pixel_range", "two numbers (low, high) with low < high", self.pixel_range, "Use e.g. (-1.0, 1.0)."
            )
        if self.commitment_cost < 0:
            raise config_error("commitment_cost", "a number >= 0", self.commitment_cost, "The usual β is 0.25.")
        if self.codebook_loss_weight < 0:
            raise config_error("codebook_loss_weight", "a number >= 0", self.codebook_loss_weight, "Use 1.0.")
        if self.quantizer_chunk_size < 1:
            raise config_error(
                "quantizer_chunk_size", "a positive integer", self.quantizer_chunk_size, "Use e.g. 8192."
            )
        self.validate_quantizer_fields()

    def validate_quantizer_fields(self) -> None:
        """Checks the quantizer options and their combinations with `quantizer_type`."""
        if self.quantizer_type not in QUANTIZER_TYPES:
            raise config_error("quantizer_type", f"one of {QUANTIZER_TYPES}", self.quantizer_type, "Pick one of them.")
        if not 0.0 < self.ema_decay < 1.0:
            raise config_error("ema_decay", "a number in (0, 1)", self.ema_decay, "The usual decay is 0.99.")
        if self.ema_epsilon <= 0:
            raise config_error("ema_epsilon", "a number > 0", self.ema_epsilon, "Use 1e-5.")
        if self.kmeans_iters < 1:
            raise config_error("kmeans_iters", "an integer >= 1", self.kmeans_iters, "Use e.g. 10.")
        if self.codebook_dim is not None and self.codebook_dim < 1:
            raise config_error("codebook_dim", "a positive integer or None", self.codebook_dim, "LlamaGen uses 8.")
        if self.codebook_usage_window < 1:
            raise config_error(
                "codebook_usage_window",
                "an integer >= 1 (training steps)",
                self.codebook_usage_window,
                "Use e.g. 100.",
            )
        if self.entropy_loss_weight < 0:
            raise config_error(
                "entropy_loss_weight", "a number >= 0", self.entropy_loss_weight, "Use 0 to disable it."
            )
        if self.entropy_temperature <= 0:
            raise config_error("entropy_temperature", "a number > 0", self.entropy_temperature, "Use 0.01.")
        if self.num_quantizers < 1:
            raise config_error("num_quantizers", "an integer >= 1", self.num_quantizers, "Use e.g. 4 for residual_vq.")
        if self.num_quantizers > 1 and self.quantizer_type != "residual_vq":
            raise config_error(
                "num_quantizers",
                "1 unless quantizer_type='residual_vq'",
                self.num_quantizers,
                "Set `quantizer_type='residual_vq'` to stack quantizers.",
            )
        codebook_options = {
            "codebook_update": self.codebook_update != "loss",
            "kmeans_init": self.kmeans_init,
            "dead_code_restart": self.dead_code_restart,
            "gradient_estimator": self.gradient_estimator != "straight_through",
            "codebook_l2_norm": self.codebook_l2_norm,
        }
        if self.quantizer_type in ("fsq", "lfq"):
            used = [name for name, on in codebook_options.items() if on]
            if used:
                raise config_error(
                    used[0],
                    f"its plain value: {self.quantizer_type!r} has no learned codebook",
                    getattr(self, used[0]),
                    f"Reset {used} or use quantizer_type='vq'.",
                )
        if self.quantizer_type == "fsq":
            if self.entropy_loss_weight:
                raise config_error(
                    "entropy_loss_weight",
                    "0 for 'fsq' (its grid is used uniformly by construction)",
                    self.entropy_loss_weight,
                    "Set it to 0.",
                )
            self._validate_fsq()
        elif self.quantizer_type == "lfq":
            size = self.num_vq_embeddings
            if size < 2 or size & (size - 1):
                lower = 1 << max(size.bit_length() - 1, 1)
                raise config_error(
                    "num_vq_embeddings",
                    "a power of 2 for LFQ (one sign bit per channel)",
                    size,
                    f"Try {lower} or {lower * 2}.",
                )
        elif self.fsq_levels is not None:
            raise config_error("fsq_levels", "None unless quantizer_type='fsq'", self.fsq_levels, "Remove it.")
        if self.codebook_dim is not None and self.quantizer_type in ("fsq", "lfq"):
            raise config_error(
                "codebook_dim",
                f"None for {self.quantizer_type!r} (its code size follows from the codebook size)",
                self.codebook_dim,
                "Remove it; the projection in and out is added automatically.",
            )

    def _validate_fsq(self) -> None:
        suggestion = FSQ_LEVEL_SUGGESTIONS.get(self.num_vq_embeddings, [8, 5, 5, 5])
        if self.fsq_levels is None or len(self.fsq_levels) == 0:
            raise config_error(
                "fsq_levels",
                "a list of per-channel level counts for quantizer_type='fsq'",
                self.fsq_levels,
                f"Use e.g. fsq_levels={suggestion} with num_vq_embeddings={math.prod(suggestion)}.",
            )
        if min(self.fsq_levels) < 2:
            raise config_error("fsq_levels", "levels >= 2", self.fsq_levels, f"Use e.g. {suggestion}.")
        if math.prod(self.fsq_levels) != self.num_vq_embeddings:
            raise config_error(
                "num_vq_embeddings",
                f"the product of `fsq_levels` {self.fsq_levels} for FSQ",
                self.num_vq_embeddings,
                f"Set num_vq_embeddings={math.prod(self.fsq_levels)}, or fsq_levels={suggestion} for "
                f"{math.prod(suggestion)} codes.",
            )
