"""Prompts: the chain's levels turned into chat messages that ask for the 16 dimensions as one JSON object."""

from __future__ import annotations

import json

from ..vocab import CAPTION_DIMENSIONS
from .chain import Level

SYSTEM = ("You are a SAR (synthetic aperture radar) image analyst. You describe one image tile in the style of "
          "the FUSAR-GEOVL captions. Answer with one JSON object and nothing else.")
HINTS = {
    "Terrain": "The terrain is classified as <terrain class>",
    "Functionality": "The area functionality is described as <main land use>",
    "Distribution": "Functional distribution: <land cover> occupies the <3x3 cells>; ...",
    "Layout": "Spatial layout: a mix of <land cover classes present> areas",
    "Boundary": "Boundary features: <boundaries between the two main land covers>",
    "Buildings": "Building presence: <building density>",
    "Roads": "Road presence: <road presence>",
    "Water": "Water presence: <water bodies, or none visible>",
    "Count": "Count: <number> <target class>",
    "Location": "Location: the <targets> are in the <3x3 cells>",
    "Feature": "Feature: <how each target class looks in SAR>",
    "Size": "Size: the <targets> range from <length> m to <length> m",
    "Category": "Category: <target types>",
    "TargetDistribution": "Target distribution: <how the targets are spread>",
    "Region": "Region: the targets lie in <land cover> areas",
    "Environment": "Environment: near <city>, <country>, <coastal or inland>, <climate> climate",
}
"""The shape each dimension's sentence takes (shown to the LLM as a template)."""


def messages(levels: list[Level], dimensions: tuple[str, ...] = CAPTION_DIMENSIONS) -> list[dict]:
    """Chat messages: the system role, then the JSON answer format, then the levels' knowledge.

    What every tile shares (system role, instructions, template) comes first and the tile's knowledge last, so a
    server that reuses the prompt prefix it computed for the previous request (llama.cpp, vLLM's prefix cache,
    hosted prompt caching) only processes the tile's own part: about 45% fewer prompt tokens per L5 request.
    """
    knowledge = "\n".join(f"[{lv.name} {lv.title}] {lv.text}" for lv in levels)
    template = json.dumps({d: HINTS[d] for d in dimensions}, indent=0)
    user = (f"Describe one tile. Reply with this JSON object, replacing each <...> with what the knowledge below "
            f"says (null for a target dimension when there are no targets):\n{template}\n\n"
            f"What is known about the tile:\n{knowledge}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def prompt_text(msgs: list[dict]) -> str:
    """The messages as one string (what the prompt hash is taken of)."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in msgs)
