from .checkpoint import (check_stvit_checkpoint, convert_checkpoint,
                         load_checkpoint_file, load_pretrained_backbone,
                         official_to_mm, pick_state_dict, to_mm_format)
from .checkpoint_file import (CheckpointFileError, UnsafeCheckpointError,
                              read_checkpoint)
from .safe_globals import register_safe_globals

__all__ = ['CheckpointFileError', 'UnsafeCheckpointError',
           'check_stvit_checkpoint', 'convert_checkpoint',
           'load_checkpoint_file', 'load_pretrained_backbone',
           'official_to_mm', 'pick_state_dict', 'read_checkpoint',
           'register_safe_globals', 'to_mm_format']
