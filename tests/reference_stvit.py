"""Official STViT, written functionally from the paper and the official key
layout (facts §1, §3), to check converted checkpoints end to end. It reads
the raw official state dict, so it shares no code with stvit_mm."""
import argparse

import torch
import torch.nn.functional as F

from reference_sta import reference_mhsa, reference_sta


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + '.running_mean'], sd[p + '.running_var'],
                        sd[p + '.weight'], sd[p + '.bias'], False, 0., 1e-5)


def _conv(x, sd, p, **kwargs):
    return F.conv2d(x, sd[p + '.weight'], sd[p + '.bias'], **kwargs)


def official_forward(sd, x, depths, num_heads, stoken_sizes):
    """Eval-mode logits of an official STViT classifier from its state dict."""
    for n in (0, 3, 6, 9):
        x = _conv(x, sd, f'patch_embed.proj.{n}', stride=2 if n in (0, 6)
                  else 1, padding=1)
        x = _bn(F.gelu(x), sd, f'patch_embed.proj.{n + 2}')
    for i, depth in enumerate(depths):
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}'
            C = x.shape[1]
            x = x + _conv(x, sd, p + '.pos_embed.conv', padding=1, groups=C)
            y = F.layer_norm(x.permute(0, 2, 3, 1), (C, ),
                             sd[p + '.norm1.norm.weight'],
                             sd[p + '.norm1.norm.bias'], 1e-6)
            q = p + '.attn.stoken_refine'
            y = reference_sta(
                y.permute(0, 3, 1, 2), (stoken_sizes[i], ) * 2, 1,
                lambda t: reference_mhsa(t, sd[q + '.qkv.weight'],
                                         sd[q + '.qkv.bias'],
                                         sd[q + '.proj.weight'],
                                         sd[q + '.proj.bias'], num_heads[i]))
            x = x + sd.get(p + '.gamma_1', 1.) * y
            y = F.gelu(_conv(_bn(x, sd, p + '.norm2'), sd, p + '.mlp2.fc1'))
            y = y + _conv(y, sd, p + '.mlp2.conv.conv', padding=1,
                          groups=y.shape[1])
            y = _conv(y, sd, p + '.mlp2.fc2')
            x = x + sd.get(p + '.gamma_2', 1.) * y
        if i < len(depths) - 1:
            x = _conv(x, sd, f'layers.{i}.downsample.proj.0', stride=2,
                      padding=1)
            x = _bn(x, sd, f'layers.{i}.downsample.proj.1')
    x = _bn(_conv(x, sd, 'proj'), sd, 'norm')
    x = (x * torch.sigmoid(x)).mean((2, 3))
    return F.linear(x, sd['head.weight'], sd['head.bias'])


def make_official_checkpoint(backbone, num_classes=7, tail_dim=24,
                             ddp=False):
    """An official-format (DeiT-style) checkpoint with random weights.

    Args:
        backbone: an stvit_mm STViT whose (random) weights supply the
            backbone part; its keys are the official ones.
    """
    gen = torch.Generator().manual_seed(123)
    sd = {}
    for key, value in backbone.state_dict().items():
        value = value.clone()
        if key.endswith(('running_mean', 'weight', 'bias')) and \
                value.is_floating_point():
            value += 0.1 * torch.randn(value.shape, generator=gen)
        if key.endswith('running_var'):
            value = 0.5 + torch.rand(value.shape, generator=gen)
        if '.gamma_' in key:
            value = 0.5 * torch.randn(value.shape, generator=gen)
        sd[key] = value
    eye = torch.eye(9).reshape(9, 1, 3, 3)
    for i, stage in enumerate(backbone.layers):
        for j in range(len(stage.blocks)):
            sd[f'layers.{i}.blocks.{j}.attn.unfold.weights'] = eye.clone()
            sd[f'layers.{i}.blocks.{j}.attn.fold.weights'] = eye.clone()
    c_last = backbone.embed_dims[-1]
    sd['proj.weight'] = 0.2 * torch.randn(tail_dim, c_last, 1, 1,
                                          generator=gen)
    sd['proj.bias'] = 0.1 * torch.randn(tail_dim, generator=gen)
    sd['norm.weight'] = 1 + 0.1 * torch.randn(tail_dim, generator=gen)
    sd['norm.bias'] = 0.1 * torch.randn(tail_dim, generator=gen)
    sd['norm.running_mean'] = 0.1 * torch.randn(tail_dim, generator=gen)
    sd['norm.running_var'] = 0.5 + torch.rand(tail_dim, generator=gen)
    sd['norm.num_batches_tracked'] = torch.tensor(100)
    sd['head.weight'] = 0.2 * torch.randn(num_classes, tail_dim,
                                          generator=gen)
    sd['head.bias'] = 0.1 * torch.randn(num_classes, generator=gen)
    model = {('module.' + k if ddp else k): v for k, v in sd.items()}
    checkpoint = {
        'model': model,
        'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-3}]},
        'epoch': 299,
        'args': argparse.Namespace(model='stvit_small', lr=1e-3,
                                   drop_path=0.1, input_size=224),
        'max_accuracy': 83.6,
    }
    return checkpoint, sd
