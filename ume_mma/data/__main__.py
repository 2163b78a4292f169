"""``python -m ume_mma.data build av-digits OUT [--setting clean|hard] [--seed N] [--limit N]``,
``python -m ume_mma.data build emoji-vl OUT [--seed N] [--limit N]``,
``python -m ume_mma.data build spoken-icons OUT [--seed N] [--limit TAKES]`` (words spoken by Festival voices, their
Adwaita icons and a sentence: a new task, :mod:`ume_mma.data.spoken_icons`),
``python -m ume_mma.data build av-digits-shift OUT [--shift image|audio|both] [--seed N] [--limit N]``
(the av-digits pairs under a shift the shipped checkpoint never saw: pool/held-out parts),
``python -m ume_mma.data build shifted OUT --base DIR --shift image|audio|text [--source NAME] [--seed N]`` (DIR's
test split with one modality from a source its models never saw: :mod:`ume_mma.data.shifted`; av-digits image
opencv|fonts, audio telephone|festival; emoji-vl image openmoji, text fr|de|es),
``python -m ume_mma.data validate DIR``,
``python -m ume_mma.data convert food101|ave|mm-imdb|kinetics-sounds SRC OUT [--classes FILE]`` (a paper's
dataset from its native layout: :mod:`ume_mma.data.convert`),
``python -m ume_mma.data import dataset|folder|csv|hf|label-studio SRC OUT [...]`` (your own data into the format:
:mod:`ume_mma.data.imports`), ``python -m ume_mma.data export hf FOLDER [OUT]`` (a Hugging Face dataset with typed
features) and ``python -m ume_mma.data export label-studio OUT --queue NAME`` (a queue as Label Studio tasks)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from ume_mma.data.convert import CONVERTERS, convert
from ume_mma.data.format import MODALITIES, SPLITS, load_dataset
from ume_mma.data.imports import cli as imports_cli
from ume_mma.errors import UmeMmaError


def _summary(folder: str) -> str:
    ds = load_dataset(folder)
    lines = [f"{ds.root}: {len(ds)} samples, {len(ds.labels)} labels, modalities: {', '.join(ds.modalities)}"]
    splits = Counter(s.split or "(none)" for s in ds)
    order = [s for s in (*SPLITS, "(none)") if s in splits]
    lines.append("split      " + "  ".join(f"{s}={splits[s]}" for s in order))
    for split in order:
        rows = [s for s in ds if (s.split or "(none)") == split]
        mods = Counter(m for s in rows for m in s.present)
        empty = sum(s.text == "" for s in rows)
        groups = len({s.group for s in rows if s.group is not None})
        lines.append(
            f"[{split}] modalities: "
            + ", ".join(f"{m}={mods[m]}" for m in MODALITIES if mods[m])
            + (f" (empty texts: {empty})" if empty else "")
            + (f", groups: {groups}" if groups else "")
        )
        styles = Counter(s.meta["style"] for s in rows if isinstance(s.meta.get("style"), str))
        if styles:
            lines.append(f"[{split}] styles: " + ", ".join(f"{k}={v}" for k, v in sorted(styles.items())))
        labels = Counter(s.label for s in rows)
        lines.append(f"[{split}] labels: " + ", ".join(f"{k}={labels[k]}" for k in sorted(labels)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ume_mma.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build a benchmark folder from offline sources")
    build.add_argument("benchmark", choices=["av-digits", "emoji-vl", "av-digits-shift", "shifted", "spoken-icons"])
    build.add_argument("out", help="output folder (replaced if it is already a dataset)")
    build.add_argument("--setting", choices=["clean", "hard"], default="clean", help="av-digits only")
    build.add_argument(
        "--shift",
        choices=["image", "audio", "both", "text"],
        default=None,
        help="av-digits-shift: image|audio|both (default both); shifted: the modality to replace",
    )
    build.add_argument("--base", default=None, help="shifted only: the built benchmark whose test split is shifted")
    build.add_argument(
        "--source",
        default=None,
        help="shifted only: where the new inputs come from (av-digits image opencv|fonts, audio telephone|festival; "
        "emoji-vl image openmoji, text fr|de|es; default the first)",
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--limit",
        type=int,
        default=None,
        help="av-digits(-shift): rows per split; emoji-vl: number of emoji; spoken-icons: takes per voice and word",
    )
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    val = sub.add_parser("validate", help="check a dataset folder and print counts")
    val.add_argument("folder")
    imports_cli.add_parsers(sub)
    conv = sub.add_parser("convert", help="a paper's dataset from its native layout (configs/recipes/README.md)")
    conv.add_argument("dataset", choices=sorted(CONVERTERS))
    conv.add_argument("src", help="the dataset as downloaded (its native layout)")
    conv.add_argument("out", help="output folder (new or empty)")
    conv.add_argument("--seed", type=int, default=0, help="food101: the hash that cuts val from train")
    conv.add_argument("--classes", default=None, help="kinetics-sounds: the class list file, one label a line")
    conv.add_argument("--skip-missing", action="store_true", help="kinetics-sounds: leave out clips not on disk")
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            print(_summary(args.folder))
            return 0
        if args.command == "convert":
            options = {"classes": args.classes, "skip_missing": args.skip_missing}
            if args.dataset != "kinetics-sounds":
                if args.classes is not None or args.skip_missing:
                    parser.error("--classes and --skip-missing apply to kinetics-sounds only")
                options = {}
            out = convert(args.dataset, args.src, args.out, seed=args.seed, **options)
            print(f"converted {args.dataset} into {out}")
            print(_summary(str(out)))
            return 0
        if args.command in ("import", "export"):
            said, out = imports_cli.run(args)
            print(f"{said} {out}" if out else said)
            if out:
                print(_summary(str(out)))
            return 0
        t0 = time.time()
        if args.shift is not None and args.benchmark not in ("av-digits-shift", "shifted"):
            parser.error("--shift applies to av-digits-shift and shifted only")
        if (args.base is not None) != (args.benchmark == "shifted"):
            parser.error("shifted needs --base (and only shifted takes it)")
        if args.source is not None and args.benchmark != "shifted":
            parser.error("--source applies to shifted only")
        if args.benchmark == "shifted":
            if args.shift is None or args.shift == "both":
                parser.error("shifted needs --shift image, audio or text")
            from ume_mma.data.shifted import build_shifted

            out = build_shifted(args.base, args.out, args.shift, seed=args.seed, source=args.source)
        elif args.benchmark == "av-digits-shift":
            if args.shift == "text":
                parser.error("av-digits-shift shifts image, audio or both")
            if args.setting != "clean":
                parser.error("--setting applies to av-digits only")
            from ume_mma.data.shift import build_shift

            out = build_shift(args.out, shift=args.shift or "both", seed=args.seed, limit=args.limit)
        elif args.benchmark == "spoken-icons":
            if args.setting != "clean":
                parser.error("--setting applies to av-digits only")
            from ume_mma.data.spoken_icons import build_spoken_icons

            out = build_spoken_icons(args.out, seed=args.seed, takes=13 if args.limit is None else args.limit)
        elif args.benchmark == "av-digits":
            from ume_mma.data.av_digits import build_av_digits

            limits = None if args.limit is None else dict.fromkeys(SPLITS, args.limit)
            out = build_av_digits(
                args.out, setting=args.setting, seed=args.seed, limit_per_split=limits, progress=not args.quiet
            )
        else:
            if args.setting != "clean":
                parser.error("--setting applies to av-digits only")
            from ume_mma.data.emoji_vl import build_emoji_vl

            out = build_emoji_vl(args.out, seed=args.seed, limit=args.limit, progress=not args.quiet)
        print(f"built {out} in {time.time() - t0:.1f} s")
        print(_summary(str(out)))
        return 0
    except (UmeMmaError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from ume_mma.cli import main_quietly

    main_quietly(main)
