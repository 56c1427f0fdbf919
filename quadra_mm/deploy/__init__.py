"""Inference export of adapted models (pure PyTorch)."""

from .export import export_for_inference

__all__ = ['export_for_inference']
