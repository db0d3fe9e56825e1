"""A bare TRL PPOTrainer script (the baseline for bench/ppo_overhead.py and bench/peers.py): the same models, prompts
and PPOConfig values as our stage, none of our code around the trainer. Prints TRAIN_SECONDS and PEAK_RSS_KB.

    python bench/_bare_ppo.py SFT_DIR REWARD_DIR PROMPTS OUTPUT_DIR SETTINGS_JSON

PROMPTS: a JSON list of prompt texts, or a saved dataset of their input_ids (bench/peers.py hands it the ids the
kit's run trained on)."""

import json
import sys
import time
from pathlib import Path

from _common import peak_rss_kb  # bench/_common.py: no rlhf import, so the script stays bare TRL
from _peer_hooks import install  # records the work as on the kit's side (bench/peers.py); no kit import

install("ppo")
from datasets import Dataset, load_from_disk  # noqa: E402
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, set_seed  # noqa: E402
from trl.experimental.ppo import PPOConfig, PPOTrainer  # noqa: E402

sft, rm, prompts_json, out, overrides = (
    sys.argv[1],
    sys.argv[2],
    sys.argv[3],
    sys.argv[4],
    json.loads(sys.argv[5]),
)
# PPOTrainer seeds torch but not numpy, whose global RNG draws each PPO epoch's minibatch order
# (np.random.permutation): unseeded, two runs split the batch differently whenever it holds more than one micro-batch.
set_seed(overrides["seed"])
tok = AutoTokenizer.from_pretrained(sft, padding_side="left")
if Path(prompts_json).is_dir():
    ds = load_from_disk(prompts_json)
else:
    ds = Dataset.from_dict({"input_ids": tok(json.load(open(prompts_json)))["input_ids"]})
policy = AutoModelForCausalLM.from_pretrained(sft)
ref = AutoModelForCausalLM.from_pretrained(sft)
reward = AutoModelForSequenceClassification.from_pretrained(rm, num_labels=1)
value = AutoModelForSequenceClassification.from_pretrained(rm, num_labels=1)
args = PPOConfig(
    output_dir=out,
    report_to="none",
    bf16=False,
    gradient_checkpointing=False,
    save_strategy="no",
    disable_tqdm=True,
    num_sample_generations=0,
    stop_token="eos",
    **overrides,
)
trainer = PPOTrainer(
    args=args,
    processing_class=tok,
    model=policy,
    ref_model=ref,
    reward_model=reward,
    value_model=value,
    train_dataset=ds,
)
t0 = time.time()
trainer.train()
print("TRAIN_SECONDS", time.time() - t0)
print("PEAK_RSS_KB", peak_rss_kb())
