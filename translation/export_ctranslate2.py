"""Export a trained translation checkpoint (ours, any position scheme, or the Marian peer) to CTranslate2, the
engine behind OpenNMT and LibreTranslate, and serve it with ``translate.py --engine ctranslate2``.

    python translation/export_ctranslate2.py --checkpoint runs/mt-rope --out exports/mt-rope
    python translation/export_ctranslate2.py --checkpoint runs/mt-rope --out exports/mt-rope-int8 --quantization int8
    echo "Hyvää huomenta." | python translation/translate.py --engine ctranslate2 --checkpoint exports/mt-rope

The folder holds CTranslate2's model, our tokenizer and ``export.json`` (the checkpoint it came from and its
model config). How each weight maps is in ``translation/deploy.py``; ``translation/tests/test_deploy.py`` proves
the exported model scores every token as ours does and decodes the same greedy outputs.
"""

from __future__ import annotations

import argparse

from shared_utils.cli import Parser, output_dir, user_path
from shared_utils.errors import cli_main
from translation.deploy import QUANTIZATIONS, export


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=user_path,
                   help="run folder (its best checkpoint) or a checkpoint folder")
    p.add_argument("--out", required=True, type=output_dir, help="the export's folder")
    p.add_argument("--quantization", default="float32", choices=QUANTIZATIONS,
                   help="how the weights are stored (int8: CTranslate2's, per output row)")
    p.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    args = p.parse_args(argv)
    info = export(args.checkpoint, args.out, args.quantization, args.force)
    model = info["model"]
    what = "the Marian peer" if model["arch"] == "marian" else f"ours, {model['positional']}"
    print(f"exported {info['checkpoint']} ({what}, {args.quantization}) to {args.out}")


if __name__ == "__main__":
    main()
