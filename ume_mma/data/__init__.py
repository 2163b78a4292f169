"""Datasets: the one folder format (metadata.jsonl) and the offline benchmark builders.

Builders (import lazily, they pull numpy/PIL): ``ume_mma.data.av_digits.build_av_digits``,
``ume_mma.data.emoji_vl.build_emoji_vl`` and ``ume_mma.data.shift.build_shift`` (av-digits under a shift the
shipped checkpoint never saw); CLI: ``python -m ume_mma.data --help``.
"""

from ume_mma.data.format import MODALITIES, SPLITS, Dataset, Sample, load_dataset, write_dataset

__all__ = ["MODALITIES", "SPLITS", "Dataset", "Sample", "load_dataset", "write_dataset"]
