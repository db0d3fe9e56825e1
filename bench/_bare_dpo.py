"""A bare TRL DPOTrainer script, the DPO baseline of bench/peers.py: the preference rows the kit's run handed its
trainer (prompt, chosen, rejected text, which DPOTrainer tokenizes itself on both sides), the SFT model as policy
and as a separate frozen reference, none of the kit's code.

    python bench/_bare_dpo.py SFT_DIR DATASET_DIR OUTPUT_DIR SETTINGS_JSON"""

import json
import sys

from _peer_hooks import install  # records the work the same way on both sides (no kit import)

install("dpo")
from datasets import load_from_disk  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

model_dir, data_dir, out, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
args = DPOConfig(
    output_dir=out,
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
trainer = DPOTrainer(
    model=policy,
    ref_model=reference,
    args=args,
    train_dataset=load_from_disk(data_dir),
    processing_class=tokenizer,
)
trainer.train()
