"""``load_pretrained``: any supported checkpoint into an MViT, with a report of what happened."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import torch
from iopath.common.file_io import g_pathmgr
from torch import nn

from ..errors import UserError
from .adapt import InflationRefused, adapt_state_dict
from .convert import stored_patch_dims, unwrap_checkpoint
from .families import family_of

logger = logging.getLogger(__name__)



class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message is one line."""


@dataclass
class LoadReport:
    """What ``load_pretrained`` did.

    Attributes:
        source_format: detected layout ("slowfast", "torchvision", ...).
        missing: model keys the checkpoint did not provide (they keep their initialisation).
        unexpected: checkpoint keys the model has no place for (ignored).
        adapted: tensors interpolated or inflated, one note each.
        head_reinitialized: the classifier was left at its initialisation (class-count mismatch).
        model_changes: settings of the model (not its weights) changed so that outputs match the source library,
            one note each (e.g. pytorchvideo's LayerNorm epsilon).
        dropped: tensors of a masked pre-training checkpoint that the model has no place for (MaskFeat's mask
            token, prediction heads and HOG filters; an MAE's decoder and mask token), left out on purpose.
    """

    source_format: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    head_reinitialized: bool = False
    model_changes: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: format, counts, and every change made to the model itself."""
        parts = [f"format={self.source_format}", f"missing={len(self.missing)}", f"unexpected={len(self.unexpected)}"]
        parts.append(f"adapted={len(self.adapted)}")
        if self.dropped:
            parts.append(f"dropped {len(self.dropped)} pre-training tensors ({_prefixes(self.dropped)})")
        if self.head_reinitialized:
            parts.append("head re-initialised")
        parts += [f"model changed: {change}" for change in self.model_changes]
        return ", ".join(parts)


def _prefixes(keys: Sequence[str]) -> str:
    """The distinct first name parts of ``keys``, in order (``decoder, encoder_to_decoder, mask_token``)."""
    return ", ".join(dict.fromkeys(k.split(".")[0] for k in keys))


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE_MAGIC = b"\x80"  # torch.save's legacy format: a pickle (protocol 2 or higher)
_SAFETENSORS_EXT = ".safetensors"


def _head(path: str, size: int = 64) -> bytes:
    with g_pathmgr.open(path, "rb") as f:
        return f.read(size)


def _describe(head: bytes) -> str:
    """What a file that is not a checkpoint looks like, for the error message."""
    text = head.split(b"\n", 1)[0][:40]
    if text and all(32 <= b < 127 or b == 9 for b in text):
        return f"it starts with the text {text.decode()!r}"
    return f"it starts with the bytes {head[:8].hex(' ')}"


def _check_file(path: str) -> bytes:
    """The first bytes of a file that could be a checkpoint; a one-line ``CheckpointError`` for one that cannot."""
    if not g_pathmgr.exists(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    if g_pathmgr.isdir(path):
        raise CheckpointError(f"{path}: a folder, not a checkpoint file; give the .pyth/.pt/.pth file in it")
    head = _head(path)
    if not head:
        raise CheckpointError(f"{path}: empty (0 bytes), not a checkpoint; was it copied or written completely?")
    return head


def _load_safetensors(path: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:160]})") from None


def read_checkpoint(path: Union[str, os.PathLike], trust_checkpoint: bool = False) -> Any:
    """Loads a checkpoint file onto the CPU without running code from it (weights-only unpickling).

    Reads ``torch.save`` files (zip or legacy format) and ``.safetensors`` files. Anything else (a folder, an empty,
    truncated or text file, another kind of pickle) is a one-line ``CheckpointError`` naming the file and what is
    wrong with it.

    Args:
        path: a local path or an iopath URI.
        trust_checkpoint: allow full unpickling, which can execute code stored in the file. Only for files
            from a source you trust.
    """
    path = os.fspath(path)
    head = _check_file(path)
    if path.endswith(_SAFETENSORS_EXT):
        return _load_safetensors(path)
    if head.startswith(_ZIP_MAGIC):
        with g_pathmgr.open(path, "rb") as f:
            if not zipfile.is_zipfile(f):
                raise CheckpointError(f"{path}: truncated (an incomplete zip archive); was it written completely?")
    elif not head.startswith(_PICKLE_MAGIC):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_describe(head)}); give a file written by "
                              "torch.save (.pyth/.pt/.pth) or a .safetensors file")  # fmt: skip
    with g_pathmgr.open(path, "rb") as f:
        try:
            return torch.load(f, map_location="cpu", weights_only=not trust_checkpoint)
        except pickle.UnpicklingError as e:
            reason = (str(e).strip().splitlines() or ["refused"])[0][:120]
            raise CheckpointError(
                f"{path}: weights-only loading refused this file ({reason}); it is not a torch checkpoint or it "
                "stores Python objects that would run code when unpickled. If it is a checkpoint from a source you "
                "trust, load it in Python with load_pretrained(model, path, trust_checkpoint=True)"
            ) from None
        except (RuntimeError, EOFError, ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


def check_complete(report: LoadReport, origin: str, may_be_missing: Sequence[str] = ()) -> None:
    """Refuses a checkpoint that lacked tensors of the model (another depth or variant), which would otherwise run
    with those layers at their random initialisation.

    Args:
        report: what ``load_pretrained`` did.
        origin: the checkpoint's path, for the message.
        may_be_missing: key fragments that may be absent (e.g. temporal tables of image checkpoints).

    Raises:
        CheckpointError: one line naming a missing tensor.
    """
    lacking = [k for k in report.missing if not any(part in k for part in may_be_missing)]
    if lacking:
        raise CheckpointError(
            f"{origin} lacks {len(lacking)} of the model's tensors (e.g. {lacking[0]}): is it another architecture? "
            "Use the config the checkpoint was trained with"
        )


def _split_head(state: dict, model_state: Mapping, head_keys: Sequence[str], num_classes_mismatch: str,
                origin: str) -> bool:  # fmt: skip
    """Drops head tensors whose class count differs from the model's (or raises); True if dropped."""
    if num_classes_mismatch not in ("error", "reinit"):
        raise ValueError(f"num_classes_mismatch must be 'error' or 'reinit', got {num_classes_mismatch!r}")
    biases = [k for k in head_keys if k.endswith("bias") and k in state and k in model_state]
    wrong = [k for k in biases if state[k].shape != model_state[k].shape]
    if not wrong:
        return False
    ckpt, ours = state[wrong[0]].shape[0], model_state[wrong[0]].shape[0]
    if num_classes_mismatch == "error":
        raise CheckpointError(
            f"{origin}: the checkpoint classifies {ckpt} classes, the model {ours}; set MODEL.NUM_CLASSES {ckpt} to "
            "use its classifier, or fine-tune with a new one (TRAIN.CHECKPOINT_REINIT_HEAD True; in Python "
            "num_classes_mismatch='reinit')"
        )
    for k in head_keys:
        state.pop(k, None)
    return True


def _check_shapes(state: Mapping, model_state: Mapping, origin: str) -> None:
    wrong = [k for k, v in state.items() if k in model_state and v.shape != model_state[k].shape]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"{origin} does not fit this model ({len(wrong)} tensors differ, e.g. {k} is "
            f"{list(state[k].shape)} in the checkpoint but {list(model_state[k].shape)} in the model): "
            "is it another architecture? Use the config or model name the checkpoint was trained with"
        )


def clear_name_patterns(obj: Mapping[str, Any], patterns: Sequence[str], origin: str = "checkpoint") -> dict:
    """A checkpoint whose tensor names lose the first occurrence of each pattern, pattern by pattern, as PySlowFast's
    ``TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN`` does (``["backbone."]``: ``backbone.blocks.0...`` -> ``blocks.0...``).

    Args:
        obj: a loaded checkpoint or state dict (PySlowFast / DDP wrappers are fine).
        patterns: substrings to remove.
        origin: the checkpoint's path, for messages.

    Returns:
        ``{"model_state": renamed state dict, **the checkpoint's other entries}``.

    Raises:
        CheckpointError: the checkpoint holds no state dict, or two tensors end up with the same name.
    """
    try:
        state, meta = unwrap_checkpoint(obj)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{origin}: {e}") from None
    for pattern in patterns:
        renamed: dict[str, Any] = {}
        for key, value in state.items():
            new = key.replace(pattern, "", 1)
            if new in renamed:
                raise CheckpointError(f"{origin}: removing {pattern!r} (TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN) gives two "
                                      f"tensors the name {new!r}; remove that pattern")  # fmt: skip
            renamed[new] = value
        state = renamed
    return {**meta, "model_state": state}


def load_pretrained(
    model: nn.Module,
    path_or_state_dict: Union[str, os.PathLike, Mapping[str, Any]],
    num_classes_mismatch: str = "error",
    inflate: str | None = "average",
    source_format: str | None = None,
    trust_checkpoint: bool = False,
    clear_patterns: Sequence[str] = (),
    origin: str | None = None,
) -> LoadReport:
    """Loads weights of any supported format into ``model`` (an ``MViT``), adapting what can be adapted.

    Supported: PySlowFast ``.pyth`` (video and image, v1/v2), torchvision ``mvit_v1_b`` / ``mvit_v2_s``,
    pytorchvideo MViT, timm and the official image MViTv2, and this toolkit's own checkpoints; for the other families
    their ``formats/`` modules (ViT: timm, HF; Swin: timm, Microsoft, torchvision ``swin_*`` / ``swin3d_*``, whose
    bias tables are resized to the model's window and repeated over time offsets). Relative-position
    tables and absolute position embeddings are interpolated to the model's input size; 2-D image kernels are
    inflated to 3-D for video models (``inflate="centre"`` keeps outputs identical on static clips, and then
    temporal tables the checkpoint lacks start at zero).

    Args:
        model: the model to fill (its other weights stay as they are).
        path_or_state_dict: a checkpoint path, or an already loaded checkpoint / state dict.
        num_classes_mismatch: "error" (default) raises when the classifier sizes differ; "reinit" keeps the
            model's freshly initialised head.
        inflate: "average" or "centre", for 2-D -> 3-D kernels; None makes a checkpoint whose kernels would need
            inflating a ``CheckpointError`` (``TRAIN.CHECKPOINT_INFLATE`` False).
        source_format: skip detection and treat the checkpoint as this format.
        trust_checkpoint: allow full (code-executing) unpickling for files that need it.
        clear_patterns: substrings removed from the tensor names first (``clear_name_patterns``).
        origin: where a given checkpoint object came from, for messages (default: its path, or "checkpoint").

    Returns:
        A ``LoadReport``; its summary is also logged.
    """
    is_path = isinstance(path_or_state_dict, (str, os.PathLike))
    obj = read_checkpoint(path_or_state_dict, trust_checkpoint) if is_path else path_or_state_dict
    origin = origin or (os.fspath(path_or_state_dict) if is_path else "checkpoint")
    if clear_patterns:
        obj = clear_name_patterns(obj, clear_patterns, origin)
    family = family_of(model.cfg)
    try:
        state, fmt = family.convert(obj, source_format)
    except ValueError as e:
        raise CheckpointError(f"{origin}: {e}") from None
    model_state = model.state_dict()
    dropped = _drop_pretraining(state, model_state, family.pretraining_keys)
    try:
        state, notes = adapt_state_dict(state, model_state, model.position_tables(), inflate, stored_patch_dims(obj))
    except InflationRefused as e:
        raise CheckpointError(f"{origin}: {e}; set TRAIN.CHECKPOINT_INFLATE True to inflate 2-D kernels to 3-D "
                              "(in Python inflate='average')") from None  # fmt: skip
    except ValueError as e:
        raise CheckpointError(f"{origin}: {e}") from None
    report = LoadReport(fmt, adapted=notes, dropped=dropped)
    head_keys = family.head_keys
    _check_shapes({k: v for k, v in state.items() if k not in head_keys}, model_state, origin)
    report.head_reinitialized = _split_head(state, model_state, head_keys, num_classes_mismatch, origin)
    _check_shapes(state, model_state, origin)
    if inflate == "centre":
        report.adapted += _zero_missing_temporal(state, model_state)
    report.model_changes = _match_source_numerics(model, fmt)
    result = model.load_state_dict(state, strict=False)
    if report.dropped and not any(k in state for k in head_keys):  # a pre-training file has no classifier
        report.head_reinitialized = any(k in result.missing_keys for k in head_keys)
    report.missing = [k for k in result.missing_keys if not (report.head_reinitialized and k in head_keys)]
    report.unexpected = list(result.unexpected_keys)
    logger.info("loaded %s: %s", origin, report.summary())
    if report.missing or report.unexpected:
        logger.warning("missing keys: %s; unexpected keys: %s", report.missing[:10], report.unexpected[:10])
    return report


def _drop_pretraining(state: dict, model_state: Mapping, prefixes: tuple[str, ...]) -> list[str]:
    """Removes (and names) the masked pre-training tensors of ``state`` (names starting with one of the family's
    ``prefixes``: MaskFeat's mask token, prediction heads and HOG filters; an MAE's decoder) that the model has no
    place for."""
    dropped = [k for k in state if k.startswith(prefixes) and k not in model_state]
    for key in dropped:
        del state[key]
    return dropped


def is_pretraining_checkpoint(obj: Any) -> bool:
    """A loaded checkpoint of a masked pre-training model (it holds a ``mask_token``)."""
    try:
        state, _ = unwrap_checkpoint(obj)
    except (TypeError, ValueError):
        return False
    return "mask_token" in state


# LayerNorm epsilon of the Q/K/V pooling norms in libraries that differ from PySlowFast's 1e-6.
_SOURCE_POOL_NORM_EPS = {"pytorchvideo": 1e-5}


def _match_source_numerics(model: nn.Module, fmt: str) -> list[str]:
    """Sets the numerics of the library the weights come from, so outputs match it exactly: a family's own rule
    (``model.match_source_numerics(fmt)``, e.g. CvT's official activation), else MViT's pooling-norm epsilon."""
    own_rule = getattr(model, "match_source_numerics", None)
    if own_rule is not None:
        return own_rule(fmt)
    eps = _SOURCE_POOL_NORM_EPS.get(fmt)
    if eps is None or getattr(model, "cfg", None) is None or model.cfg.pool_norm_eps == eps:
        return []
    old = model.cfg.norm_eps if model.cfg.pool_norm_eps is None else model.cfg.pool_norm_eps
    for module in model.modules():
        for name in ("norm_q", "norm_k", "norm_v"):
            norm = getattr(module, name, None)
            if isinstance(norm, nn.LayerNorm):
                norm.eps = eps
    model.cfg = model.cfg.replace(pool_norm_eps=eps)
    return [f"pooling LayerNorm eps {old:g} -> {eps:g}, as {fmt} computes"]


def _zero_missing_temporal(state: dict, model_state: Mapping) -> list[str]:
    """Temporal tables an image checkpoint lacks start at zero, so inflated models equal the image model."""
    notes = []
    for key, value in model_state.items():
        if key not in state and (key.endswith("rel_pos_t") or key.endswith("pos_embed_temporal")):
            state[key] = torch.zeros_like(value)
            notes.append(f"{key}: zeros (not in the checkpoint)")
    return notes
