"""docs/API.md is generated from the settings' declarations and gcode.fit's docstrings; it must
be what the generator writes today (run `python -m gcode.api_reference` after changing them)."""

from gcode import api_reference


def test_api_md_is_current():
    assert api_reference.PATH.read_text(encoding="utf-8") == api_reference.render(), \
        "docs/API.md is stale: run python -m gcode.api_reference"


def test_every_config_field_is_documented():
    text = api_reference.render()
    from gcode.config import SETTINGS
    for s in SETTINGS:
        assert f"| `{s.name}` |" in text and f"`{s.flag}`" in text, s.api
