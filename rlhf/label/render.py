"""Text as the labeling page shows it: bidi controls made visible, and a small markdown subset rendered to HTML.

Model text and guidelines are untrusted. The renderer escapes the whole text first (`html.escape`, quotes too),
then recognises markdown only in the escaped text, so the only tags in its output are the ones it writes itself:
p, br, h3-h6, ul/ol/li, blockquote, pre/code, strong, em and a (http, https and mailto targets only), and for a
conversation one div per turn with its speaker. No raw HTML passes through, no image is ever loaded. The page's Content-Security-Policy (no inline script) backs this up.

Covered: paragraphs and line breaks, ATX headings, fenced code blocks, flat bullet and numbered lists,
blockquotes, `code`, **bold**, *italic* / _italic_, [links](https://...). Anything else stays as (escaped) text.
"""

from __future__ import annotations

import html
import re

# Right-to-left/left-to-right embeddings, overrides, isolates and marks: they can make text read in a different
# order than it is stored (a response that visually reverses). Shown as a visible [U+202E] marker instead.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def neutralise_bidi(text: str) -> str:
    return BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^ {0,3}[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^ {0,3}\d{1,9}[.)]\s+(.*)$")
_QUOTE = re.compile(r"^ {0,3}&gt;\s?(.*)$")  # '>' is already escaped
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(r"\[([^\[\]]+)\]\(((?:https?://|mailto:)[^\s()<>\"']+)\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.S)
_ITALIC = re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])", re.S)


def _inline(escaped: str) -> str:
    """Inline markup on already-escaped text; code spans are left exactly as they are."""
    out = []
    pos = 0
    for m in _CODE_SPAN.finditer(escaped):
        out.append(_emphasis(escaped[pos : m.start()]))
        out.append(f"<code>{m.group(2)}</code>")
        pos = m.end()
    out.append(_emphasis(escaped[pos:]))
    return "".join(out)


def _emphasis(s: str) -> str:
    # The URL was escaped with the rest (quotes included) and is limited to characters that cannot leave the
    # attribute; the scheme is checked by the pattern, so javascript: and data: links stay text.
    s = _LINK.sub(lambda m: f'<a href="{m.group(2)}" rel="noopener noreferrer nofollow">{m.group(1)}</a>', s)
    s = _BOLD.sub(r"<strong>\2</strong>", s)
    return _ITALIC.sub(r"<em>\2</em>", s)


def render_markdown(text: str) -> str:
    """HTML for `text` (see the module docstring for what is recognised); safe to assign to innerHTML."""
    lines = (
        html.escape(neutralise_bidi(text), quote=True).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    )
    blocks: list[str] = []
    para: list[str] = []
    items: list[str] = []
    list_tag = ""
    quote: list[str] = []

    def flush() -> None:
        nonlocal list_tag
        if para:
            blocks.append("<p>" + "<br>".join(_inline(x) for x in para) + "</p>")
            para.clear()
        if items:
            blocks.append(
                f"<{list_tag}>" + "".join(f"<li>{_inline(x)}</li>" for x in items) + f"</{list_tag}>"
            )
            items.clear()
            list_tag = ""
        if quote:
            blocks.append("<blockquote>" + "<br>".join(_inline(x) for x in quote) + "</blockquote>")
            quote.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            body = []
            i += 1
            while i < len(lines) and not lines[i].lstrip().startswith(fence.group(1)):
                body.append(lines[i])
                i += 1
            blocks.append("<pre><code>" + "\n".join(body) + "</code></pre>")
            i += 1  # the closing fence (or the end of the text)
            continue
        if not line.strip():
            flush()
        elif m := _HEADING.match(line):
            flush()
            level = min(len(m.group(1)) + 2, 6)
            blocks.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif (m := _BULLET.match(line)) or (m := _NUMBERED.match(line)):
            tag = "ul" if _BULLET.match(line) else "ol"
            if para or quote or (items and tag != list_tag):
                flush()
            list_tag = tag
            items.append(m.group(1))
        elif m := _QUOTE.match(line):
            if para or items:
                flush()
            quote.append(m.group(1))
        elif items and line.startswith(("  ", "\t")):
            items[-1] += "<br>" + line.strip()  # a continuation line of the last list item
        else:
            if items or quote:
                flush()
            para.append(line)
        i += 1
    flush()
    return "\n".join(blocks)


_SPEAKERS = {"system": "System", "user": "User", "assistant": "Assistant"}


def render_conversation(messages: list[dict]) -> str:
    """HTML for a conversation: one block per turn, its speaker named, its content rendered as markdown."""
    turns = []
    for m in messages:
        role = _SPEAKERS.get(m.get("role"), "Unknown")
        turns.append(
            f'<div class="turn turn-{role.lower()}"><div class="turn-role">{role}</div>'
            f"{render_markdown(str(m.get('content', '')))}</div>"
        )
    return "\n".join(turns)
