"""docs/RESULTS.md and the README's headline table are generated from benchmarks/results/*.json
(benchmarks/make_results.py): they must be current, and every result file must be shown."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import make_results
from results_doc import RESULTS, find_row, load, models
from results_index import HEADLINES, SECTIONS, UNSHOWN


def test_results_md_and_the_readme_headlines_are_current():
    stale = make_results.stale()
    assert not stale, f"{stale} stale: run python benchmarks/make_results.py and commit the result"


def test_every_result_file_is_shown_or_listed_with_a_reason():
    shown = {f for s in SECTIONS for f in s.files} | {f for h in HEADLINES for f in h.files}
    on_disk = {p.stem for p in RESULTS.glob("*.json")}
    assert not (shown | set(UNSHOWN)) - on_disk, "a section names a file that does not exist"
    missing = on_disk - shown - set(UNSHOWN)
    assert not missing, (f"{sorted(missing)}: add a Section to benchmarks/results_index.py "
                         "(or an UNSHOWN entry saying why not)")
    assert all(UNSHOWN.values()), "every UNSHOWN file needs a reason"


def test_headings_are_unique_and_headlines_point_at_sections():
    anchors = [s.anchor for s in SECTIONS]
    assert len(anchors) == len(set(anchors))
    headings = {s.heading for s in SECTIONS}
    assert all(h.section in headings for h in HEADLINES)


def test_headline_rows_keep_one_model_and_m_model_figures_apart():
    """One-model rows come first; a row never mixes results that trained different numbers of
    models, so no figure stands for both."""
    seen_many = False
    for h in HEADLINES:
        counts = {models(find_row(load(f), h.row)) for f in h.files}
        assert len(counts) == 1, f"{h.row} in {h.files} trained {counts} models"
        many = counts.pop() > 1
        assert many or not seen_many, f"{h.row}: one-model rows must come before M-model rows"
        seen_many |= many


def test_the_readme_tables_one_model_and_m_model_rows_apart():
    """The README's headline block is two tables: every row of the first trains one model,
    every row of the second trains M >= 2."""
    block = make_results.headline_block()
    one, several = block.split("**Training M ≥ 2 models**")
    assert "**Training one model**" in one
    assert "| 1 model ×" in one and " models ×" not in one
    assert " models ×" in several and "| 1 model ×" not in several


@pytest.mark.parametrize("section", [s for s in SECTIONS if s.render], ids=lambda s: s.anchor)
def test_every_section_renders(section):
    text = make_results.section_text(section)
    assert text.startswith("#" * section.level + " ")
