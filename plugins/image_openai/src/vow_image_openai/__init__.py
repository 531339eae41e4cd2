"""vow-image-openai: the ``openai`` image provider for vow (any OpenAI-compatible endpoint)."""

from vow_image_openai.provider import OpenAIImageOptions, OpenAIImageProvider

__all__ = ["OpenAIImageOptions", "OpenAIImageProvider"]
