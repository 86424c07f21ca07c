"""A user card file that is nested absurdly deep gives one line naming the file."""

from __future__ import annotations

import pytest

from tritonkit.cards import load_card_file
from tritonkit.errors import CardError


def test_deeply_nested_card_gives_one_line_naming_the_file(tmp_path):
    card = tmp_path / "card.json"
    card.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CardError) as info:
        load_card_file(card)
    assert str(card) in str(info.value) and "nested too deeply" in str(info.value)
