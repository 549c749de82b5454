"""diffusers pipelines built on hf-vq models. Importing this package imports diffusers
(`pip install hf-vq[diffusers]`); `import hf_vq` alone does not."""

from .pipeline_vq_image import VQImagePipeline
from .sampling import sample_images

__all__ = ["VQImagePipeline", "sample_images"]
