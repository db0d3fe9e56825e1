import sys

from rlhf.runtime import configure_process

configure_process()  # before ppo.train imports torch: OpenMP reads its wait policy once, when it loads
from ppo.train import cli  # noqa: E402

sys.exit(cli(sys.argv[1:], prog="python -m ppo"))
