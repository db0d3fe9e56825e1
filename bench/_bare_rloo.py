"""A bare TRL RLOOTrainer script, the RLOO baseline of bench/peers.py: the prompts the kit's run handed its trainer,
the SFT model as policy (TRL loads the reference from the same dir), a reward function over the reward model,
none of the kit's code.

    python bench/_bare_rloo.py SFT_DIR REWARD_DIR DATASET_DIR OUTPUT_DIR SETTINGS_JSON

The reward function scores the prompt's ids followed by the sampled ids, as the kit's RLOO and PPO stages score
them (the sequence the reward model was trained on), and subtracts `missing_eos_penalty` from a completion that
never emitted EOS. Handing RLOOTrainer the reward model itself would decode the completions and re-tokenize
prompt + completion text, which is other token ids and so other work."""

import json
import sys

from _peer_hooks import install  # records the work the same way on both sides (no kit import)

install("rloo")
import torch  # noqa: E402
from datasets import load_from_disk  # noqa: E402
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402
from trl import RLOOConfig, RLOOTrainer  # noqa: E402

sft_dir, rm_dir, data_dir, out, settings = sys.argv[1:6]
settings = json.loads(settings)
missing_eos_penalty = settings.pop("missing_eos_penalty")
tokenizer = AutoTokenizer.from_pretrained(sft_dir, padding_side="left")
policy = AutoModelForCausalLM.from_pretrained(sft_dir, dtype="float32")
reward_model = AutoModelForSequenceClassification.from_pretrained(
    rm_dir, num_labels=1, dtype="float32"
).eval()
reward_model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token


@torch.no_grad()
def reward_model_score(prompts, completions, completion_ids, batch_size=64, **_):
    """Scalar-head score of prompt ids + sampled ids, right-padded, in batches of `batch_size`."""
    if not isinstance(prompts[0], str):  # chat prompts are messages; the peer chains use the Alpaca template
        raise SystemExit("_bare_rloo.py: expects Alpaca-formatted prompt text, got chat messages")
    rows = [p + list(c) for p, c in zip(tokenizer(prompts)["input_ids"], completion_ids)]
    scores = []
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        width = max(map(len, batch))
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in batch])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in batch])
        scores += reward_model(input_ids=ids, attention_mask=mask).logits[:, 0].float().tolist()
    return [
        s - missing_eos_penalty * (tokenizer.eos_token_id not in c) for s, c in zip(scores, completion_ids)
    ]


args = RLOOConfig(
    output_dir=out,
    report_to="none",
    save_strategy="no",
    logging_steps=1,
    disable_tqdm=True,
    gradient_checkpointing=False,
    bf16=False,
    dataloader_pin_memory=False,
    **settings,
)
trainer = RLOOTrainer(
    model=policy,
    reward_funcs=reward_model_score,
    args=args,
    train_dataset=load_from_disk(data_dir),
    processing_class=tokenizer,
)
trainer.train()
