"""Importers into the one dataset format (:mod:`ume_mma.data.format`) and exporters out of it.

- :mod:`~ume_mma.data.imports.folders`: a folder of class subfolders; a CSV of file paths and labels;
- :mod:`~ume_mma.data.imports.hf`: a Hugging Face ``datasets`` dataset in (``save_to_disk`` folder, parquet files,
  a dataset folder or Hub id) and out (parquet with typed ``Image``/``Audio``/``Video``/``ClassLabel`` features);
- :mod:`~ume_mma.data.imports.labelstudio`: a Label Studio JSON export in (``choices`` annotations), and an
  annotation queue out as Label Studio tasks with our branch and fused predictions as ``predictions``.

Every importer writes through :class:`~ume_mma.data.imports.staging.Staging`: each file is checked by the one
decode path as the modality it is imported as, the folder is built beside its target and renamed when complete,
so bad input is refused in words and leaves nothing behind. The CLI is ``python -m ume_mma.data import ...``.
"""
