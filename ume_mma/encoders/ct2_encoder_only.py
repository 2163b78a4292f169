"""An encoder-only copy of a CTranslate2 Whisper model, for an encoder that never decodes (``WhisperCT2``).

CTranslate2 loads a Whisper model whole, decoder included, converted to the compute type: for tiny.en in
float32, 148 MB resident, of which the decoder's token embeddings (51,864 x 384) are 76 MB that encoding never
reads. :func:`encoder_only_folder` writes (once, into a cache folder) a copy of the model whose
``decoder/embeddings/weight`` keeps one row; every other variable, the encoder's included, is copied byte for
byte, so ``encode`` gives bit-identical outputs. CTranslate2 needs the decoder layers to build the model, so they
stay (they are small). **Never decode with the copy.**

The copy is derived, never trusted: if the cache cannot be written, or the model file is not a format-6
``WhisperSpec`` (what this code reads), the caller gets the original folder back and loads the full model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tempfile
from pathlib import Path

MODEL_FILE = "model.bin"
CUT = "decoder/embeddings/weight"  # the variable cut to one row (the output projection is an alias of it)
LAYOUT = 1  # bump when what the copy holds changes: a new cache folder is written


class UnknownLayout(ValueError):
    """The model file is not the CTranslate2 layout this module reads."""


def encoder_only_bytes(data: bytes) -> bytes:
    """``model.bin`` bytes (CTranslate2 binary format 6, ``WhisperSpec``) with :data:`CUT` reduced to its first
    row; everything else unchanged. Raises :class:`UnknownLayout` for anything else."""
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        try:
            (value,) = struct.unpack_from(fmt, data, offset)
        except struct.error as exc:
            raise UnknownLayout(f"truncated model file: {exc}") from None
        offset += struct.calcsize(fmt)
        return value

    def name() -> tuple[str, bytes]:  # a uint16 length, then that many bytes (NUL-terminated)
        nonlocal offset
        start, size = offset, take("<H")
        offset += size
        raw = data[start:offset]
        return raw[2:].rstrip(b"\0").decode(errors="replace"), raw

    version = take("<I")
    spec, spec_raw = name()
    if version != 6 or spec != "WhisperSpec":
        raise UnknownLayout(f"CTranslate2 model format {version} of {spec!r}; this code reads format 6 WhisperSpec")
    revision, count = take("<I"), take("<I")
    parts, cut = [], False
    for _ in range(count):
        var, raw = name()
        rank = take("<B")
        dims = [take("<I") for _ in range(rank)]
        dtype, size = take("<B"), take("<I")
        payload = data[offset : offset + size]
        offset += size
        if var == CUT and rank == 2 and dims[0] > 1 and size % dims[0] == 0:
            payload, dims, size, cut = payload[: size // dims[0]], [1, dims[1]], size // dims[0], True
        parts.append(raw + struct.pack(f"<B{rank}IBI", rank, *dims, dtype, size) + payload)
    if not cut or offset > len(data):
        raise UnknownLayout(f"no {CUT} of rank 2 found" if not cut else "truncated model file")
    header = struct.pack("<I", version) + spec_raw + struct.pack("<II", revision, count)
    return header + b"".join(parts) + data[offset:]  # the rest: the aliases, unchanged


def encoder_only_folder(model_dir: str | Path, cache: str | Path) -> Path:
    """A folder holding the encoder-only copy of the CTranslate2 Whisper model in ``model_dir`` (its other files
    copied beside it), made once under ``cache`` and reused; ``model_dir`` itself when the copy cannot be made
    (unwritable cache, unknown layout). The cache key names the source's path, size and modification time."""
    model_dir = Path(model_dir)
    source = model_dir / MODEL_FILE
    try:
        st = source.stat()
        key = hashlib.sha256(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{LAYOUT}".encode()).hexdigest()[:16]
        target = Path(cache).expanduser() / key
        if (target / MODEL_FILE).is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        slim = encoder_only_bytes(source.read_bytes())
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        try:
            tmp.chmod(0o755)
            for f in model_dir.iterdir():
                if f.is_file() and f.name != MODEL_FILE:
                    shutil.copyfile(f, tmp / f.name)
            (tmp / MODEL_FILE).write_bytes(slim)
            os.rename(tmp, target)  # atomic: a reader sees the folder complete or not at all
        except OSError:  # e.g. another process made it first: use theirs if it is there
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone after a successful rename
        return target if (target / MODEL_FILE).is_file() else model_dir
    except (OSError, UnknownLayout):
        return model_dir
