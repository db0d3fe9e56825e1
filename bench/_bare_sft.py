"""A bare TRL SFTTrainer script, the SFT baseline of bench/peers.py: completion-only loss on a pre-tokenized
dataset (input_ids + completion_mask: the token ids the kit's run trained on), none of the kit's code.

    python bench/_bare_sft.py MODEL_DIR DATASET_DIR OUTPUT_DIR SETTINGS_JSON"""

import json
import sys

from _peer_hooks import install  # records the work the same way on both sides (no kit import)

install("sft")
from datasets import load_from_disk  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

model_dir, data_dir, out, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
set_seed(settings["seed"])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
args = SFTConfig(
    output_dir=out,
    completion_only_loss=True,
    max_length=None,  # the ids are already truncated at the kit's max_length
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
trainer = SFTTrainer(
    model=model, args=args, train_dataset=load_from_disk(data_dir), processing_class=tokenizer
)
trainer.train()
