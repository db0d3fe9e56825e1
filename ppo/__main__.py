import sys

from ppo.train import cli

sys.exit(cli(sys.argv[1:], prog="python -m ppo"))
