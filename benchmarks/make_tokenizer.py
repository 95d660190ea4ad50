"""Derives a byte-level BPE tokenizer of exactly --vocab-size ids from a larger one, for serving
benchmarks on a published shape whose tokenizer is not at hand (Llama-3.1-8B: 128,256 ids) with
a real vocabulary (Qwen3's): the first vocab_size - #special ordinary tokens are kept with the
merges that build them, and the special tokens take the top ids.  Writes tokenizer.json and
tokenizer_config.json (chat template and special tokens refer to tokens by text) into --out.

    python benchmarks/make_tokenizer.py --src ../shared/tokenizers/qwen3 --vocab-size 128256 \\
        --out .dev/models/llama3.1-8b
"""
import argparse
import json
import os
import shutil


def derive(src: dict, vocab_size: int) -> dict:
    model, added = src["model"], sorted(src["added_tokens"], key=lambda a: a["id"])
    if model["type"] != "BPE":
        raise SystemExit(f"only BPE tokenizers can be cut down, this one is {model['type']}")
    keep = vocab_size - len(added)
    if keep <= 256:
        raise SystemExit(f"--vocab-size {vocab_size} leaves no room beyond the bytes and {len(added)} special tokens")
    vocab = {tok: i for tok, i in model["vocab"].items() if i < keep}
    merges = []
    for m in model["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    out = dict(src, model=dict(model, vocab=vocab, merges=merges))
    out["added_tokens"] = [dict(a, id=keep + k) for k, a in enumerate(added)]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", required=True, help="directory with tokenizer.json (+ tokenizer_config.json)")
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    with open(os.path.join(args.src, "tokenizer.json"), encoding="utf-8") as f:
        tok = derive(json.load(f), args.vocab_size)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    cfg = os.path.join(args.src, "tokenizer_config.json")
    if os.path.exists(cfg):
        with open(cfg, encoding="utf-8") as f:
            c = json.load(f)
        c.pop("added_tokens_decoder", None)  # ids changed; tokenizer.json has them
        with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(c, f, ensure_ascii=False, indent=1)
    n = len(tok["model"]["vocab"]) + len(tok["added_tokens"])
    print(f"{args.out}: {n} ids ({len(tok['model']['vocab'])} ordinary, {len(tok['added_tokens'])} special), "
          f"{len(tok['model']['merges'])} merges")


if __name__ == "__main__":
    main()
