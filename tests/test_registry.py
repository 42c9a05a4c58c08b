"""One registration, three toolboxes: custom_imports makes STViT resolve from
the mmpretrain, mmdet and mmseg scopes; importing it needs neither mmdet nor
mmseg. Run in fresh interpreters so that nothing is imported beforehand."""
import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_custom_imports_registers_in_all_three_scopes(tmp_path):
    config = tmp_path / 'cfg.py'
    config.write_text(textwrap.dedent("""
        custom_imports = dict(imports=['stvit_mm'], allow_failed_imports=False)
        model = dict(type='STViT', arch='s', out_indices=(0, 1, 2, 3))
    """))
    out = _run(f"""
        import sys
        from mmengine.config import Config
        from mmengine.registry import DefaultScope
        assert 'stvit_mm' not in sys.modules
        cfg = Config.fromfile({str(config)!r})
        from mmpretrain.registry import MODELS as CLS
        from mmdet.registry import MODELS as DET
        from mmseg.registry import MODELS as SEG
        import torch
        for scope, registry in (('mmpretrain', CLS), ('mmdet', DET),
                                ('mmseg', SEG)):
            with DefaultScope.overwrite_default_scope(scope):
                model = registry.build(cfg.model)
            assert type(model).__module__ == 'stvit_mm.models.backbones.stvit'
            outs = model.eval()(torch.randn(1, 3, 64, 64))
            print(scope, [tuple(o.shape[1:]) for o in outs])
    """)
    for scope in ('mmpretrain', 'mmdet', 'mmseg'):
        assert (f'{scope} [(64, 16, 16), (128, 8, 8), (320, 4, 4), '
                '(512, 2, 2)]') in out


def test_import_without_mmdet_and_mmseg():
    out = _run("""
        import sys
        sys.modules['mmdet'] = None   # any import of these now fails
        sys.modules['mmseg'] = None
        import stvit_mm
        from mmengine.registry import MODELS
        model = MODELS.build(dict(type='STViT', arch='s'))
        print(type(model).__name__)
    """)
    assert out.strip() == 'STViT'


def test_one_backbone_class():
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG

    import stvit_mm
    assert {r.get('STViT') for r in (CLS, DET, SEG)} == {stvit_mm.STViT}
