"""``thrifty student``: train a distilled classifier tier, try it, export a fine-tuning set."""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def _train(args: argparse.Namespace) -> int:
    from thrifty.calibration.student import student_data, train_student
    from thrifty.cli.collect_cmd import comma_list

    texts, labels, info = student_data(args.dir, teacher=args.teacher, gold=args.gold_column, choices=comma_list(args.choices))
    student = train_student(
        texts,
        labels,
        c=args.c,
        prefix=info.get("prefix"),
        template=info.get("template"),
        meta={"source": info["source"], "folder": str(args.dir)},
    )
    student.save(args.out)
    print(
        f"trained student on {len(texts)} examples ({info['source']}; classes {', '.join(student.classes)}; "
        f"train accuracy {student.meta['train_accuracy']:.3f}) → {args.out}"
    )
    if info.get("unparsed_dropped"):
        print(f"  {info['unparsed_dropped']} teacher answers had no allowed label and were dropped")
    print(f"use it as a tier: pass student:{args.out} as a model name (e.g. thrifty collect --models student:{args.out},...)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from thrifty.serving.providers.student import StudentProvider

    prov = StudentProvider.load(args.artefact)
    for text in args.text:
        label, conf, probs = prov.answer(text)
        print(json.dumps({"text": text, "label": label, "confidence": round(conf, 4), "probs": probs}, ensure_ascii=False))
    return 0


def _export(args: argparse.Namespace) -> int:
    from thrifty.calibration.student import export_finetune

    n = export_finetune(args.dir, args.out, teacher=args.teacher, min_quality=args.min_quality, system=args.system)
    print(f"wrote {n} chat examples from {args.teacher} → {args.out} (see docs/student.md to train and plug in the student)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("student", help="distil a cheap student tier from collected answers")
    s = p.add_subparsers(dest="student_command", metavar="ACTION", required=True)
    t = s.add_parser("train", help="train an embedding classifier on a teacher's answers or on gold")
    t.add_argument("dir", help="a collection folder (thrifty collect)")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--teacher", help="model whose answers are the labels (distillation)")
    src.add_argument("--gold", dest="gold_column", metavar="COLUMN", help="train on a gold column instead")
    t.add_argument("--choices", help="allowed labels (default: the distinct gold values)")
    t.add_argument("--c", type=float, default=1.0, help="inverse L2 strength of the logistic regression (default 1)")
    t.add_argument("--out", required=True, help="artefact path (JSON)")
    t.set_defaults(func=_train)
    pr = s.add_parser("predict", help="label texts with a trained student")
    pr.add_argument("artefact")
    pr.add_argument("text", nargs="+")
    pr.set_defaults(func=_predict)
    e = s.add_parser("export-ft", help="export a teacher's answers as chat JSONL for fine-tuning")
    e.add_argument("dir")
    e.add_argument("--teacher", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--min-quality", type=float, help="keep only answers labelled at least this good")
    e.add_argument("--system", help="system message added to every example")
    e.set_defaults(func=_export)
