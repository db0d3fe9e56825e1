"""Stage 1: Alpaca-style supervised fine-tuning."""
