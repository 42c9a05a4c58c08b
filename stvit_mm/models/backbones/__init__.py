from .stvit import STViT

__all__ = ['STViT']
