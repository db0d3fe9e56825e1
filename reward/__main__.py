import sys

from reward.train import cli

sys.exit(cli(sys.argv[1:], prog="python -m reward"))
