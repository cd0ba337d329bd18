"""The task model registry: names, and which models a task can score."""

from __future__ import annotations

import pytest
from klip_tiny import tiny_model

from klip_lib.tasks.models import ModelSet, parse_names, usable


class ImageOnly:
    has_text = False
    has_itm = False


def test_unknown_model_name_is_named():
    with pytest.raises(ValueError, match=r"unknown model\(s\) \['dino'\]"):
        parse_names("random,dino")
    assert parse_names("random, klip,") == ["random", "klip"]


def test_usable_moves_models_a_task_cannot_score_to_not_provided(capsys):
    models = ModelSet({"klip": tiny_model(), "mae": ImageOnly()}, {"remoteclip": "path /x missing"})
    text = usable(models, "text")
    assert list(text) == ["klip"]
    assert text.not_provided == {"remoteclip": "path /x missing", "mae": "n/a (no text encoder)"}
    assert "mae: n/a (no text encoder)" in capsys.readouterr().out
    assert list(usable(models, "klip")) == ["klip"]
