# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
from .flops import (EXTRA_FLOP_HANDLES, FlopsReport, build_model_from_config,
                    count_flops, format_report, get_flops, sdpa_flop_jit)

__all__ = ['EXTRA_FLOP_HANDLES', 'FlopsReport', 'build_model_from_config',
           'count_flops', 'format_report', 'get_flops', 'sdpa_flop_jit']
