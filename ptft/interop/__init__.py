"""Interoperability with Hugging Face ``transformers``, timm and torchvision: their checkpoints
become ptft backbones (:mod:`ptft.interop.foreign`), and ptft backbones are written back in their
formats (:mod:`ptft.interop.export`). One converter file per source architecture."""
