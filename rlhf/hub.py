"""`push_to_hub` / `hub_model_id`: the finished stage dir (manifest included) uploaded after the manifest is written.

Trainer's own push is never used: it uploads at save time, before the model card and the manifest exist, so the
hub copy would look like an unfinished run. The checks run where a stage starts, before anything is created: a
push that cannot happen (offline, no token) is refused in one line instead of failing after training.
"""

from __future__ import annotations

from pathlib import Path

from rlhf.errors import UserError

# Not uploaded: intermediate trainer checkpoints kept with keep_checkpoints (optimizer state, rng pickles).
UPLOAD_IGNORE = ["checkpoint-*", "checkpoint-*/**"]


def push_target(cfg) -> str | None:
    """The hub repo id the finished stage goes to (`hub_model_id`, else the output dir's name), None when not
    pushing; a UserError naming the key when the push cannot happen. Call before anything is created."""
    from huggingface_hub import constants, get_token

    where = cfg.config_path or "command line"
    if not cfg.push_to_hub:
        if cfg.hub_model_id:
            raise UserError(
                "hub_model_id is set but push_to_hub is not: set push_to_hub: true to upload the finished stage "
                "there, or remove hub_model_id",
                where,
                "key 'hub_model_id'",
            )
        return None
    if constants.is_offline_mode():
        raise UserError(
            "push_to_hub needs the Hugging Face Hub, but HF_HUB_OFFLINE is set: unset it, or set push_to_hub: "
            "false and upload the finished stage dir later (`hf upload REPO DIR`)",
            where,
            "key 'push_to_hub'",
        )
    if not (cfg.hub_token or get_token()):
        raise UserError(
            "push_to_hub needs a Hugging Face token: set HF_TOKEN, run `hf auth login`, or set hub_token",
            where,
            "key 'push_to_hub'",
        )
    return cfg.hub_model_id or Path(cfg.output_dir).resolve().name


def upload_stage(out: Path, repo_id: str, cfg) -> str:
    """Upload the finished stage dir `out` to `repo_id` (created if missing); returns the commit URL. A failure
    leaves the local stage finished and is one UserError saying how to upload it by hand."""
    from huggingface_hub import HfApi

    api = HfApi(token=cfg.hub_token or None)
    try:
        api.create_repo(repo_id, private=cfg.hub_private_repo, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=out,
            revision=cfg.hub_revision,
            commit_message=f"rlhf {out.name}: finished stage",
            ignore_patterns=UPLOAD_IGNORE,
        )
    except Exception as e:  # network, auth, quota: whatever the hub client raised, as one line
        raise UserError(
            f"the stage finished, but uploading it to the hub repo {repo_id} failed ({str(e).splitlines()[0]}); "
            f"upload it with `hf upload {repo_id} {out}`",
            out,
        ) from None
    return str(getattr(info, "commit_url", info))
