"""``python -m llama_core corpus list|build``: the corpora this machine offers, and one
built and described (characters, vocabulary, split, hash)."""

from __future__ import annotations

from ..plain_text import terminal_text
from .output import print_result


def add_corpus_command(sub) -> None:
    corpus = sub.add_parser("corpus", help="list corpora or build and describe one")
    corpus.add_argument("action", choices=["list", "build"])
    corpus.add_argument("name", nargs="?", default="shakespeare",
                        help="corpus name or path to a UTF-8 text file")
    corpus.add_argument("--json", action="store_true")
    corpus.set_defaults(func=cmd_corpus)


def cmd_corpus(args) -> int:
    from ... import corpora

    if args.action == "list":
        rows = [vars(c) if not hasattr(c, "_asdict") else c._asdict()
                for c in corpora.list_corpora()]
        rows = [dict(name=r["name"], description=r["description"], available=r["available"],
                     chars=r["chars"]) for r in rows]
        if args.json:
            print_result(rows, True)
        else:
            for r in rows:
                chars = f"{r['chars']:,} characters" if r["chars"] else "not available here"
                print(terminal_text(f"{r['name']:<16} {chars:<24} {r['description']}"))
        return 0
    corpus = corpora.load_corpus(args.name)
    info = {"name": corpus.name, "chars": len(corpus.text),
            "vocab_size": corpus.tokenizer.vocab_size, "train_tokens": len(corpus.train),
            "val_tokens": len(corpus.val), "sha256": corpus.sha256}
    print_result(info, args.json)
    return 0
