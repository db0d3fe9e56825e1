import sys

from rlhf.runtime import configure_process

configure_process()  # before dpo.train imports torch: OpenMP reads its wait policy once, when it loads
from dpo.train import cli  # noqa: E402

sys.exit(cli(sys.argv[1:], prog="python -m dpo"))
