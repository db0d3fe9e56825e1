import sys

from rlhf.runtime import configure_process

configure_process()  # before rloo.train imports torch: OpenMP reads its wait policy once, when it loads
from rloo.train import cli  # noqa: E402

sys.exit(cli(sys.argv[1:], prog="python -m rloo"))
