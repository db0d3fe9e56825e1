"""A bare TRL RewardTrainer script, the reward baseline of bench/peers.py: the pairs as token ids (chosen_ids /
rejected_ids, exactly the ones the kit's run trained on), a scalar head on the same SFT model, none of the kit's code.

    python bench/_bare_reward.py SFT_DIR DATASET_DIR OUTPUT_DIR SETTINGS_JSON"""

import json
import sys

from _peer_hooks import install  # records the work the same way on both sides (no kit import)

install("reward")
from datasets import load_from_disk  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed  # noqa: E402
from trl import RewardConfig, RewardTrainer  # noqa: E402

model_dir, data_dir, out, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
set_seed(settings["seed"])  # the fresh score head's initial weights
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype="float32")
model.config.pad_token_id = tokenizer.pad_token_id
args = RewardConfig(
    output_dir=out,
    max_length=None,  # the kit dropped the pairs over its max_length already
    report_to="none",
    save_strategy="no",
    eval_strategy="no",
    logging_steps=1,
    disable_tqdm=True,
    gradient_checkpointing=False,
    bf16=False,
    dataloader_pin_memory=False,
    **settings,
)
trainer = RewardTrainer(
    model=model, args=args, train_dataset=load_from_disk(data_dir), processing_class=tokenizer
)
trainer.train()
