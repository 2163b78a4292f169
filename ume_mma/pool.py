"""A pool of loaded checkpoints shared by every user of a server (the app, a script serving several models).

Loading a checkpoint can take seconds; it happens outside the pool's lock, so predictions on checkpoints
already loaded never wait for it, and two requests for the same checkpoint load it once. References that
name the same checkpoint (``checkpoints/x``, ``./checkpoints/x``, an absolute path, ``hf-hub:org/name``)
share one entry.

Who may name what (:meth:`PredictorPool.allowed`): a reference from a user is never a ``package:`` reference (those
name installed Python packages, for the encoder weights of shipped checkpoints) nor a URL. A server only this
machine reaches loads any local folder or Hub id. A server others reach passes a rule: ``allow`` (checkpoints it
serves: folders relative to ``root`` and Hub ids pinned as ``org/name@revision``), ``allow_roots`` (folders whose
checkpoints it may load too: its checkpoints folder, its own jobs' outputs) and ``any_hub_repo`` (any Hub id):
any other reference — another local path, ``..``, a Hub repo outside the list — is refused with one message,
whatever exists on the disk, before the file system outside those roots or the Hub is touched.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ume_mma.batching import MicroBatcher
from ume_mma.errors import CheckpointError, UmeMmaError, shorten
from ume_mma.hub import HF_PREFIX, PACKAGE_PREFIX
from ume_mma.predictor import Prediction, Predictor

MAX_REF_CHARS = 512  # a checkpoint reference longer than this is refused before touching the file system
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}(@[\w./-]{1,128})?")  # org/name[@revision]


@dataclass
class Loaded:
    """One loaded checkpoint: its predictor (thread-safe), model card text, stored evaluation, and the batcher
    that runs concurrent requests for it as one batch through the encoders."""

    predictor: Predictor
    card: str
    metrics: dict[str, Any] | None
    batcher: MicroBatcher = field(init=False)

    def __post_init__(self) -> None:
        self.batcher = MicroBatcher(self.predictor)


class PredictorPool:
    """A bounded LRU of loaded checkpoints (``size`` entries), shared by all sessions. ``root``: the folder
    that relative references such as ``checkpoints/x`` are tried against when they do not exist as given
    (the app's folder). ``predictor_kwargs`` go to :meth:`Predictor.from_pretrained` (limits, device, ...)."""

    def __init__(
        self,
        size: int = 3,
        root: Path | None = None,
        allow: list[str] | None = None,
        allow_roots: list[Path] | tuple[Path, ...] = (),
        any_hub_repo: bool = False,
        **predictor_kwargs: Any,
    ) -> None:
        self.size, self.root, self.predictor_kwargs = size, root, predictor_kwargs
        self.any_hub_repo = any_hub_repo
        self.allow = None if allow is None else list(allow)
        self.allow_roots = [Path(r).resolve() for r in allow_roots]
        self._aliases = _aliases(self.allow or [])
        self._items: OrderedDict[str, Loaded] = OrderedDict()
        self._loading: dict[str, threading.Event] = {}  # key -> set when its load finished (or failed)
        self._errors: dict[str, UmeMmaError] = {}  # key -> why its last load failed (for waiting callers)
        self._lock = threading.Lock()  # held only to read or change the dicts above, never while loading

    def allowed(self, ref: str) -> str:
        """``ref`` as it may be loaded here, or :class:`CheckpointError`.

        Never from a request: ``package:`` references (they name installed Python packages: encoder weights inside
        shipped checkpoints only) and URLs. Without a rule (``allow`` None and no ``allow_roots``: a server only
        this machine reaches) any local folder or Hub id. With a rule: an ``allow`` entry (a Hub id of the list
        without its revision gets the pinned one), a checkpoint folder under one of ``allow_roots``, or, with
        ``any_hub_repo``, any Hub id (returned as ``hf-hub:org/name``, so no local path is tried). Every refused
        reference gets the same message, whatever exists on the disk."""
        if ref.startswith(PACKAGE_PREFIX) or "://" in ref:
            raise self._refusal(ref)
        if self.allow is None and not self.allow_roots:
            return ref
        if ref in self._aliases:  # every allowed reference is one of its own aliases
            return self._aliases[ref]
        if self.allow_roots and ".." not in Path(ref).parts:
            path = Path(ref)
            path = path if path.is_absolute() else (self.root or Path.cwd()) / path
            try:
                resolved = path.resolve()
                if any(resolved.is_relative_to(r) for r in self.allow_roots) and (resolved / "config.json").is_file():
                    return str(resolved)
            except OSError:  # e.g. a name over the file system's limit: refused like any other
                pass
        if self.any_hub_repo and HUB_ID.fullmatch(ref.removeprefix(HF_PREFIX)):
            return HF_PREFIX + ref.removeprefix(HF_PREFIX)
        raise self._refusal(ref)

    def _refusal(self, ref: str) -> CheckpointError:
        if self.allow is None and not self.allow_roots:
            served = "local checkpoint folders and Hub repos (org/name)"
        elif self.any_hub_repo:
            served = "the checkpoints under checkpoints/, its own fine-tuning results and Hub repos (org/name)"
        else:
            served = ", ".join(self.allow or []) or "nothing"
        what = "this public app" if self.allow is not None and not self.any_hub_repo else "this app"
        return CheckpointError(f"{shorten(ref)} is not served here: {what} loads only {served}")

    def key(self, ref: str) -> str:
        """The canonical key of a reference: an existing local folder -> its resolved absolute path;
        a Hub id -> ``org/name`` (without ``hf-hub:``). Raises CheckpointError for an empty or huge one, and
        for one this pool may not load (:meth:`allowed`)."""
        ref = (ref or "").strip()
        if not ref:
            raise CheckpointError("give a checkpoint: a folder under checkpoints/, a local path or a Hub repo id")
        if len(ref) > MAX_REF_CHARS or "\0" in ref:
            raise CheckpointError(
                f"a checkpoint reference is a path or a Hub repo id of at most {MAX_REF_CHARS} characters; "
                f"got {shorten(ref)}"
            )
        ref = self.allowed(ref)
        if self._ruled and ref.startswith(HF_PREFIX):  # a Hub id under a rule: never tried as a local path
            return ref.removeprefix(HF_PREFIX)
        try:
            for candidate in (Path(ref).expanduser(), (self.root / ref) if self.root else None):
                if candidate is not None and candidate.is_dir():
                    return str(candidate.resolve())
        except OSError as exc:  # e.g. a path component over the file system's name limit
            raise CheckpointError(f"{shorten(ref)} is not a usable path: {exc.strerror}") from None
        return ref.removeprefix(HF_PREFIX)

    @property
    def _ruled(self) -> bool:
        """Does a loading rule apply (an allow-list or allowed roots), or does this machine's user load anything?"""
        return self.allow is not None or bool(self.allow_roots)

    def get(self, ref: str) -> Loaded:
        """The loaded checkpoint for ``ref``, loading it first if needed (outside the pool's lock)."""
        key = self.key(ref)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            event = self._loading.get(key)
            owner = event is None
            if owner:
                event = self._loading[key] = threading.Event()
                self._errors.pop(key, None)
        if not owner:
            event.wait()
            with self._lock:
                if key in self._items:
                    return self._items[key]
                raise self._errors.get(key) or CheckpointError(f"could not load {shorten(ref.strip())}")
        return self._load(ref.strip(), key, event)

    def _load(self, ref: str, key: str, event: threading.Event) -> Loaded:
        """Load ``key`` under the name the user gave (``ref``: a result names no server path it did not say)."""
        item = error = None
        source = key if Path(key).is_absolute() or not self._ruled else HF_PREFIX + key
        try:
            predictor = Predictor.from_pretrained(source, name=ref, **self.predictor_kwargs)
            item = Loaded(predictor, predictor.card, predictor.metrics)
        except UmeMmaError as exc:
            error = CheckpointError(f"Could not load {shorten(ref)}: {exc}")
            raise error from exc
        finally:
            with self._lock:
                if item is not None:
                    self._items[key] = item
                    while len(self._items) > self.size:
                        self._items.popitem(last=False)
                elif error is not None:
                    self._errors[key] = error
                del self._loading[key]
            event.set()
        return item

    def loaded(self) -> list[str]:
        """Keys of the checkpoints loaded now, least recently used first."""
        with self._lock:
            return list(self._items)

    def predict(
        self, ref: str, inputs: dict[str, Any], modalities: list[str] | None = None, subsets: bool = False
    ) -> Prediction:
        """Predict with ``ref``; requests that overlap in time are batched (:class:`MicroBatcher`)."""
        return self.get(ref).batcher.predict(inputs, modalities, subsets=subsets)


def _aliases(allow: list[str]) -> dict[str, str]:
    """Each allowed reference under the names a user may type: as listed, ``./x`` for a folder, and for a
    pinned Hub id ``org/name@rev`` also ``org/name`` and ``hf-hub:`` forms (all -> the pinned reference)."""
    names: dict[str, str] = {}
    for ref in allow:
        names[ref] = ref
        if "@" in ref:
            repo = ref.split("@", 1)[0]
            names |= {repo: ref, f"hf-hub:{repo}": ref, f"hf-hub:{ref}": ref}
        else:
            names[f"./{ref}"] = ref
    return names
