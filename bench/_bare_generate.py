"""Plain batched `model.generate`, the generation baseline of bench/peers.py: left-padded batches of the same size,
greedy, none of the kit's code.

    python bench/_bare_generate.py MODEL_DIR PROMPTS_JSON BATCH_SIZE MAX_NEW_TOKENS"""

import json
import sys

from _peer_hooks import install  # records the work the same way on both sides (no kit import)

install("generate")
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

model_dir, prompts_json, batch_size, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
prompts = json.load(open(prompts_json))
texts = []
with torch.no_grad():
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True)
        out = model.generate(
            **enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        texts += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
