"""Chat messages in rows: the one validator every reader uses, and the plain-text view of a conversation."""

from __future__ import annotations

from pathlib import Path

from rlhf.errors import UserError

ROLES = ("system", "user", "assistant")
_SPEAKER = {"user": "Human", "assistant": "Assistant", "system": "System"}


def check_messages(value, path: str | Path, where: str, key: str = "messages") -> list[dict]:
    """`value` as a list of {"role", "content"} dicts (roles system/user/assistant, string content), or one
    UserError naming the file, the row and the key. Extra keys in a message (e.g. "name") are dropped."""
    if not isinstance(value, list) or not value:
        raise UserError(
            f"key '{key}': expected a non-empty list of {{'role', 'content'}} messages", path, where
        )
    out = []
    for i, m in enumerate(value):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise UserError(
                f"key '{key}' message {i + 1}: expected {{'role': str, 'content': str}}", path, where
            )
        if m["role"] not in ROLES:
            raise UserError(
                f"key '{key}' message {i + 1}: role {m['role']!r}; expected one of {', '.join(ROLES)}",
                path,
                where,
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def transcript(messages: list[dict]) -> str:
    """A conversation as a person reads it: "Human: ...\\n\\nAssistant: ..." (pairs files, the labeling app, the
    Alpaca template's instruction text for a conversation)."""
    return "\n\n".join(f"{_SPEAKER[m['role']]}: {m['content'].strip()}" for m in messages)
