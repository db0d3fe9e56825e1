"""The kit's side of a peer comparison (bench/peers.py), with bench/_peer_hooks.py recording its work.

    python bench/_peer_ours.py KIND rlhf-command args...    (KIND: sft, reward, ppo)
    python bench/_peer_ours.py generate MODEL_DIR PROMPTS_JSON BATCH_SIZE MAX_NEW_TOKENS

The stages run through `rlhf.cli.main`, as `rlhf sft ...` would; generation through `rlhf.generate.generate`, the
batched sampler `rlhf compare` uses, on a model loaded as compare loads it."""

import json
import sys

from _peer_hooks import install

kind = sys.argv[1]
install(kind)
if kind == "generate":
    from rlhf.generate import SamplingParams, generate
    from rlhf.models import load_causal_lm, load_tokenizer

    model_dir, prompts_json, batch_size, max_new = sys.argv[2:6]
    model, tok = load_causal_lm(model_dir), load_tokenizer(model_dir)
    prompts = json.load(open(prompts_json))
    generate(model, tok, prompts, SamplingParams(max_new_tokens=int(max_new)), batch_size=int(batch_size))
else:
    from rlhf.cli import main

    sys.exit(main(sys.argv[2:]))
