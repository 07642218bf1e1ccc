"""README.md: what a reader sees on GitHub."""
import re

from helpers import ROOT


def test_hand_written_tables_are_at_most_120_characters_wide():
    """Issue 25 case 24: rows ran to 330+ characters. The generated results blocks are the report's."""
    wide, generated = [], False
    for number, line in enumerate((ROOT / "README.md").read_text().splitlines(), start=1):
        if re.match(r"<!-- results:\S+:start", line):
            generated = True
        elif re.match(r"<!-- results:\S+:end", line):
            generated = False
        elif line.startswith("|") and not generated and len(line) > 120:
            wide.append((number, len(line)))
    assert wide == []
