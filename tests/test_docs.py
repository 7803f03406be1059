"""The committed documentation assets: what the README shows must be drawable."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = sorted((ROOT / "docs" / "screenshots").glob("*.svg"))


def test_there_are_screenshots() -> None:
    assert len(SCREENSHOTS) >= 5, SCREENSHOTS


@pytest.mark.parametrize("svg", SCREENSHOTS, ids=lambda path: path.name)
def test_every_screenshot_is_well_formed_xml(svg: Path) -> None:
    """A browser refuses to draw an SVG that is not XML (a raw ESC from a log tail was one)."""
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
