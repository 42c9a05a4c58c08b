from .backbones import STViT
from .necks import STViTClsNeck

__all__ = ['STViT', 'STViTClsNeck']
