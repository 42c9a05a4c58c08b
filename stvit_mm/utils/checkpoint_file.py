# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Read a local checkpoint file with torch's weights-only loader, and say
clearly what is wrong with a file that cannot be read.

torch's own errors for a bad file are bare (``EOFError`` for an empty file,
``KeyError: 101`` for a text file) or, for a pickle that asks for a global
outside the allow-list, advise re-running with ``weights_only=False``, which
would execute whatever the file asks for. :func:`read_checkpoint` checks the
file's structure first (without unpickling anything), and turns a refusal
into a message that names the file, the globals and the risk.

Importing stvit_mm makes this the loader mmengine's ``CheckpointLoader``
uses for local paths, so every entry point reports the same way: the
converter, the backbone's Pretrained ``init_cfg``, the Runner's
``load_from`` / ``resume``, ``init_detector`` / ``init_model`` and the
toolboxes' inferencers.
"""
import io
import os
import os.path as osp
import pickle
import pickletools
import re
import zipfile

import torch

# torch.save's legacy (pre-1.6, non-zip) format starts with this pickled int.
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_ZIP_HEAD = b'PK\x03\x04'


class CheckpointFileError(ValueError):
    """The file is not a readable PyTorch checkpoint (empty, another format,
    truncated or corrupted)."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The weights-only loader refused the file's pickle: it asks for
    something outside the allow-list. Nothing from it was executed."""


def _pickle_is_complete(stream: io.BufferedIOBase) -> bool:
    """Whether one pickle in ``stream`` runs to its STOP opcode. Reads the
    opcodes only (pickletools): nothing is imported or executed."""
    try:
        for _ in pickletools.genops(stream):
            pass
    except (ValueError, EOFError):  # "pickle exhausted before seeing STOP"
        return False
    return True


def _describe_foreign(head: bytes) -> str:
    """A hint at what a non-checkpoint file is, from its first bytes."""
    if len(head) >= 10 and head[8:10] == b'{"':
        return 'it looks like a safetensors file'
    text = head[:64]
    if text and all(32 <= b < 127 or b in (9, 10, 13) for b in text):
        sample = text.decode('ascii').strip().splitlines()[0][:40]
        return (f'it looks like a text file (starts with {sample!r}; an '
                'error page saved instead of the weights?)')
    return f'it starts with the bytes {head[:8]!r}'


def check_checkpoint_structure(filename: str) -> None:
    """Raise a clear error if ``filename`` cannot be a complete PyTorch
    checkpoint: missing, a directory, empty, another format, or truncated.
    Reads the file's structure and pickle opcodes only.

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: the path is a directory.
        CheckpointFileError: any other reason, named in the message.
    """
    if not osp.exists(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    if osp.isdir(filename):
        raise IsADirectoryError(f'{filename} is a directory, not a '
                                'checkpoint file')
    size = osp.getsize(filename)
    if size == 0:
        raise CheckpointFileError(
            f'{filename} is empty (0 bytes), not a PyTorch checkpoint: an '
            'interrupted download or save? Download or save it again.')
    with open(filename, 'rb') as f:
        head = f.read(64)
        if head.startswith(_ZIP_HEAD):
            _check_zip(filename, size)
        elif head[:1] == b'\x80':  # a pickle: torch's legacy format?
            f.seek(0)
            _check_legacy(filename, f, size)
        else:
            raise CheckpointFileError(
                f'{filename} is not a PyTorch checkpoint (neither the zip '
                'archive torch.save writes nor its legacy format): '
                f'{_describe_foreign(head)}')


def _check_zip(filename: str, size: int) -> None:
    truncated = (f'{filename} is truncated or corrupted ({size} bytes, '
                 'the zip archive that torch.save writes is incomplete): '
                 'download or save it again')
    if not zipfile.is_zipfile(filename):  # the directory is at the end
        raise CheckpointFileError(truncated)
    try:
        with zipfile.ZipFile(filename) as archive:
            records = [n for n in archive.namelist()
                       if n.endswith('/data.pkl') or n == 'data.pkl']
            if not records:
                raise CheckpointFileError(
                    f'{filename} is a zip archive but not a PyTorch '
                    'checkpoint (it has no data.pkl record)')
            with archive.open(records[0]) as record:
                complete = _pickle_is_complete(record)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError):
        raise CheckpointFileError(truncated) from None
    if not complete:
        raise CheckpointFileError(truncated)


def _check_legacy(filename: str, f, size: int) -> None:
    ops = []
    try:
        for opcode, arg, _ in pickletools.genops(f):
            ops.append((opcode.name, arg))
    except (ValueError, EOFError):
        ops = []
    if not any(name.startswith('LONG') and arg == _LEGACY_MAGIC
               for name, arg in ops):
        raise CheckpointFileError(
            f'{filename} is a pickle but not a PyTorch checkpoint (torch.save'
            ' output starts with a zip header or its legacy magic number)')
    # protocol version, system info, then the object itself
    if not all(_pickle_is_complete(f) for _ in range(3)):
        raise CheckpointFileError(
            f'{filename} is truncated or corrupted ({size} bytes, it ends '
            'inside its pickled data): download or save it again')


def _refused_globals(filename: str, error: Exception) -> list:
    """The globals the file's pickle asks for that the allow-list refuses,
    found without executing anything."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # legacy format: not supported there
        names = []
    if not names:  # torch names the first refused global in its message
        names = re.findall(r'GLOBAL ([\w.]+)', str(error))
    return sorted(set(names))


def _refusal_reason(error: Exception) -> str:
    """torch's reason for a refusal, without its advice to switch the
    weights-only loader off."""
    lines = [line.strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line and 'weights_only' not in line
             and 'Weights only load failed' not in line
             and 'documentation of torch.load' not in line]
    reason = ' '.join(lines)
    reason = reason.replace('WeightsUnpickler error: ', '')
    return reason or type(error).__name__


def read_checkpoint(filename, map_location=None):
    """``torch.load(filename, weights_only=True)`` with a clear error for
    every kind of bad file (see :func:`check_checkpoint_structure`).

    Raises:
        UnsafeCheckpointError: the pickle asks for globals outside the
            allow-list (named in the message); nothing was executed.
        FileNotFoundError, IsADirectoryError, CheckpointFileError: see
            :func:`check_checkpoint_structure`.
    """
    filename = osp.expanduser(os.fspath(filename))
    check_checkpoint_structure(filename)
    # Register again (idempotent): leaving a torch.serialization.safe_globals
    # context, as timm's loader does around its own loads, removes what it
    # listed from the process-wide allow-list, argparse.Namespace included.
    from .safe_globals import register_safe_globals
    register_safe_globals()
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError as error:
        names = _refused_globals(filename, error)
        if names:
            what = (f'its pickle asks for {", ".join(names)}, which is not on '
                    'the allow-list of types a checkpoint may hold (torch\'s '
                    'weights-only loader plus the mmengine and official STViT '
                    'types that stvit_mm adds)')
        else:
            what = ('the weights-only loader refused it: '
                    f'{_refusal_reason(error)}')
        # "from None": torch's message advises weights_only=False
        raise UnsafeCheckpointError(
            f'{filename} was not loaded: {what}. The file may be unsafe: '
            'unpickling it could run code. Nothing from it was executed. Use '
            'only checkpoints from a source you trust; official STViT files '
            'and mmengine checkpoints need nothing beyond the allow-list.'
        ) from None
    except (EOFError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and \
                'PytorchStreamReader' not in str(error):
            raise  # not about the file's bytes (e.g. a map_location problem)
        detail = str(error).splitlines()[0] if str(error) else \
            type(error).__name__
        raise CheckpointFileError(
            f'{filename} is truncated or corrupted ({detail}): download or '
            'save it again') from None


def load_from_local_checked(filename, map_location=None):
    """mmengine ``CheckpointLoader`` backend for local paths: mmengine's own,
    with the checks of :func:`read_checkpoint`."""
    return read_checkpoint(filename, map_location)


def register_checked_local_loader() -> None:
    """Make :func:`load_from_local_checked` the loader of local paths
    (mmengine's prefix ``''``, the fallback for anything without a URL
    scheme); idempotent."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='',
                                     loader=load_from_local_checked,
                                     force=True)
