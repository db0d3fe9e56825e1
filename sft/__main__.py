import sys

from sft.train import cli

sys.exit(cli(sys.argv[1:], prog="python -m sft"))
