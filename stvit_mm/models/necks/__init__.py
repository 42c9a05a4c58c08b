from .stvit_neck import STViTClsNeck

__all__ = ['STViTClsNeck']
