from .checkpoint import (convert_checkpoint, load_checkpoint_file,
                         load_pretrained_backbone, official_to_mm,
                         pick_state_dict, to_mm_format)
from .safe_globals import register_safe_globals

__all__ = ['convert_checkpoint', 'load_checkpoint_file',
           'load_pretrained_backbone', 'official_to_mm', 'pick_state_dict',
           'register_safe_globals', 'to_mm_format']
