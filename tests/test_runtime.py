"""Importing the kit changes nothing in the process; `rlhf.runtime.configure_process` applies the run's settings
where a command starts, and the user's environment wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch  # noqa: F401  (loaded, as in any stage run through the Python API)
from conftest import REPO

from rlhf import runtime

OURS = (
    "TRL_EXPERIMENTAL_SILENCE",
    "TOKENIZERS_PARALLELISM",
    runtime._OUR_TOKENIZERS_DEFAULT,
    "OMP_WAIT_POLICY",
)


def clean_env(**extra) -> dict:
    """This process's environment without the variables the kit sets, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in OURS}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def run_python(code: str, env: dict, cwd) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


IMPORT_PROBE = """
import json, os, sys, time
opened, slept = [], []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
time.sleep = lambda seconds: slept.append(seconds)
before = dict(os.environ)
import rlhf, sft, reward, ppo
after = dict(os.environ)
changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
print(json.dumps({"proc": [p for p in opened if p.startswith("/proc")], "slept": slept, "changed": changed}))
"""


def test_importing_the_kit_reads_no_proc_file_sleeps_never_and_leaves_the_environment_alone(tmp_path):
    seen = json.loads(run_python(IMPORT_PROBE, clean_env(), tmp_path))
    assert seen == {"proc": [], "slept": [], "changed": []}


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the busy-cores probe reads Linux's /proc/stat")
def test_the_probe_sees_what_configure_process_does(tmp_path):
    """The probe above would catch the side effects it rules out: run configure_process() in its place."""
    probe = IMPORT_PROBE.replace(
        "import rlhf, sft, reward, ppo", "from rlhf.runtime import configure_process; configure_process()"
    )
    seen = json.loads(run_python(probe, clean_env(), tmp_path))
    assert "/proc/stat" in seen["proc"] and seen["slept"] == [0.05]
    assert {"TRL_EXPERIMENTAL_SILENCE", "TOKENIZERS_PARALLELISM"} <= set(seen["changed"])


def test_configure_process_sets_defaults_and_leaves_the_users_values(monkeypatch):
    for name in OURS:
        monkeypatch.delenv(name, raising=False)
    applied = runtime.configure_process()
    assert applied == {
        "TRL_EXPERIMENTAL_SILENCE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        runtime._OUR_TOKENIZERS_DEFAULT: "false",
    }
    # torch is loaded here: the OpenMP wait policy is left alone
    assert all(os.environ[k] == v for k, v in applied.items()) and "OMP_WAIT_POLICY" not in os.environ
    assert not runtime.tokenizers_parallelism_set_by_user()
    # again (a second command in this process): TOKENIZERS_PARALLELISM is still our default, not the user's choice
    assert runtime.configure_process() == {
        k: v for k, v in applied.items() if k != "TRL_EXPERIMENTAL_SILENCE"
    }

    monkeypatch.delenv(runtime._OUR_TOKENIZERS_DEFAULT)
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    assert runtime.configure_process() == {}
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true" and os.environ["TRL_EXPERIMENTAL_SILENCE"] == ""
    assert runtime.tokenizers_parallelism_set_by_user()


def test_wait_policy_is_chosen_only_before_torch_loads(tmp_path):
    """OpenMP reads OMP_WAIT_POLICY once, when torch loads it: configure_process samples the cores (and may set
    it) only before that. rlhf/_omp.py's rule itself is tested in test_models.py."""
    code = (
        "import sys, rlhf._omp as omp; omp.cores_in_use_by_others = lambda: 2.0; from rlhf import runtime; "
        "print(runtime.configure_process().get('OMP_WAIT_POLICY')); import torch; "
        "import os; os.environ.pop('OMP_WAIT_POLICY', None); print(runtime.configure_process().get('OMP_WAIT_POLICY'))"
    )
    assert run_python(code, clean_env(), tmp_path).split() == ["PASSIVE", "None"]
    assert run_python(code.replace("2.0", "0.0"), clean_env(), tmp_path).split() == ["None", "None"]


def test_the_cli_configures_the_process_before_torch_loads(tmp_path):
    code = (
        "import sys, rlhf.cli as cli; seen = []; configure = cli.configure_process; "
        "cli.configure_process = lambda: (seen.append('torch' in sys.modules), configure())[1]; "
        "rc = cli.main(['tasks', '--n', '2', '--out', 'tasks.json']); "
        "import os; print(rc, seen, os.environ['TOKENIZERS_PARALLELISM'])"
    )
    assert run_python(code, clean_env(), tmp_path).splitlines()[-1] == "0 [False] false"


def test_tokenizer_threads_only_inside_the_block(monkeypatch):
    """Turned on for the batch calls and restored afterwards (a later fork sees them configured off); a value the
    user set is left alone."""
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv(runtime._OUR_TOKENIZERS_DEFAULT, "false")
    with runtime.tokenizer_threads():
        assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    monkeypatch.delenv(runtime._OUR_TOKENIZERS_DEFAULT)  # now the user's "false"
    with runtime.tokenizer_threads():
        assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    monkeypatch.delenv("TOKENIZERS_PARALLELISM")  # nothing set (no configure_process): restored to unset
    with runtime.tokenizer_threads():
        assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
    assert "TOKENIZERS_PARALLELISM" not in os.environ


@pytest.mark.parametrize(
    "user,expected", [(None, ["False", "false"]), ("false", ["True", "false"]), ("true", ["True", "true"])]
)
def test_a_child_process_inherits_the_default_not_a_user_choice(tmp_path, user, expected):
    """A process started by a configured one (a pipeline's stage, a bench run) still sees tokenizer threads off as
    the kit's default, which SFT preprocessing may turn on; a value the user set stays theirs all the way down."""
    probe = (
        "import os; from rlhf import runtime; runtime.configure_process(); "
        "print(runtime.tokenizers_parallelism_set_by_user(), os.environ['TOKENIZERS_PARALLELISM'])"
    )
    parent = f"import subprocess, sys; from rlhf import runtime; runtime.configure_process(); subprocess.run([sys.executable, '-c', {probe!r}])"  # fmt: skip
    env = clean_env() if user is None else clean_env(TOKENIZERS_PARALLELISM=user)
    assert run_python(parent, env, tmp_path).split() == expected
