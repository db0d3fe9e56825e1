"""Preference-labeling web app: `rlhf label serve | export | stats | add-annotator | links | import` (see
docs/labeling.md).

`human_winrate(db_path)` gives the human win-rate of source A vs B from a blind comparison, for `rlhf compare`.
"""

from rlhf.label.stats import human_winrate

__all__ = ["human_winrate"]
