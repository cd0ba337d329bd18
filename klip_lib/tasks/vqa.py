"""VQA with the paper's six question kinds, generated from ground truth, answered by the image-grounded text
encoder: a classifier over an answer vocabulary on the fused [CLS] (BLIP/ALBEF's VQA-as-classification).

Kinds: count, target recognition, target position on the 3x3 grid, main landform, all landforms, regional
landform; several templates each. Answers are canonical strings, so accuracy is exact match. The image and
text encoders stay frozen (their outputs are computed once); the fusion layers and the head are fine-tuned.
"""

from __future__ import annotations

import copy
import os
import random
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..model import KlipModel
from ..vocab import GRID_CELLS, LANDCOVER_CLASSES, TARGET_CLASSES
from .retrieval import SplitData

KINDS = ("count", "recognition", "position", "main_landform", "all_landforms", "regional_landform")
PLURALS = {"ship": "ships", "aircraft": "aircraft", "storage tank": "storage tanks", "vehicle": "vehicles"}
TEMPLATES = {
    "count": ("how many {plural} are there in the image?", "what is the number of {plural}?",
              "count the {plural} in this sar image."),
    "recognition": ("what kinds of targets are in the image?", "which targets can be seen?",
                    "what objects are visible in this sar image?"),
    "position": ("where is the largest {target} in the image?", "in which part of the image is the largest {target}?",
                 "which grid cell holds the biggest {target}?"),
    "main_landform": ("what is the main land cover?", "which land cover dominates the image?",
                      "what is the prevailing landform of this tile?"),
    "all_landforms": ("which land covers are present?", "what landforms appear in the image?",
                      "list the land cover types in this tile."),
    "regional_landform": ("what is the main land cover in the {cell} of the image?",
                          "which land cover dominates the {cell} part?", "what covers the {cell} region?"),
}
REGIONAL_CELLS = 3  # grid cells asked about per tile


@dataclass
class Question:
    tile: int  # index of the tile in its SplitData
    kind: str  # one of KINDS
    text: str  # the question
    answer: str  # canonical answer
    subject: str | None = None  # the target class or grid cell asked about


def _joined(names: list[str], order: tuple[str, ...]) -> str:
    """Names in vocabulary order joined by ' and ', or 'none'."""
    return " and ".join(n for n in order if n in names) or "none"


def tile_questions(facts: dict, tile: int, seed: int = 0) -> list[Question]:
    """The questions of one tile with their true answers; templates and sampled subjects drawn from (tile, seed)."""
    rng = random.Random(f"{facts['tile_id']}:{seed}")
    ask = lambda kind, answer, subject=None, **words: Question(  # noqa: E731
        tile, kind, rng.choice(TEMPLATES[kind]).format(**words), answer, subject)
    counts = {c: sum(t["class"] == c for t in facts["targets"]) for c in TARGET_CLASSES}
    present = [c for c in TARGET_CLASSES if counts[c]]
    absent = [c for c in TARGET_CLASSES if not counts[c]]
    asked = present + ([rng.choice(absent)] if absent else [])
    out = [ask("count", str(counts[c]), c, plural=PLURALS[c]) for c in asked]
    out.append(ask("recognition", _joined(present, TARGET_CLASSES)))
    size = lambda t: (t["length_m"] or 0.0, t.get("pixels") or 0)  # noqa: E731 (no pixel spacing: no length)
    for c in present:
        largest = max((t for t in facts["targets"] if t["class"] == c), key=size)
        out.append(ask("position", largest["grid_cell"], c, target=c))
    out.append(ask("main_landform", facts["main_landform"]))
    out.append(ask("all_landforms", _joined(facts["landforms_present"], LANDCOVER_CLASSES)))
    for cell in rng.sample(GRID_CELLS, REGIONAL_CELLS):
        out.append(ask("regional_landform", facts["regional_landform"][cell], cell, cell=cell))
    return out


def make_questions(data: SplitData, seeds: tuple[int, ...] = (0,)) -> list[Question]:
    """Questions of every tile of the split, one draw of templates and subjects per seed."""
    return [q for seed in seeds for i, f in enumerate(data.facts) for q in tile_questions(f, i, seed)]


def majority_answers(questions: list[Question]) -> dict[str, str]:
    """The most common answer per question kind (the trivial baseline, taken from the training questions)."""
    return {k: Counter(q.answer for q in questions if q.kind == k).most_common(1)[0][0]
            for k in KINDS if any(q.kind == k for q in questions)}


def question_prior(questions: list[Question]) -> dict[tuple[str, str | None], str]:
    """The most common training answer per question content (kind and subject: the target class or grid cell asked
    about); the paraphrase templates say nothing more, so this is the best a model that never sees the image can
    do on these questions (the question-only baseline)."""
    groups: dict[tuple[str, str | None], Counter] = {}
    for q in questions:
        groups.setdefault((q.kind, q.subject), Counter())[q.answer] += 1
    return {key: c.most_common(1)[0][0] for key, c in groups.items()}


def prior_answers(prior: dict[tuple[str, str | None], str], majority: dict[str, str],
                  questions: list[Question]) -> list[str]:
    """The question-only baseline's answers: the prior of each question's content, the majority answer of its kind
    where training never asked it."""
    return [prior.get((q.kind, q.subject), majority.get(q.kind, "none")) for q in questions]


BASELINES = {"majority answer": "majority answer per kind", "question only": "question only (never sees the image)"}


def baseline_answers(train_questions: list[Question], questions: list[Question]) -> dict[str, list[str]]:
    """The trivial baselines' answers to `questions`, learnt from `train_questions` and keyed as `BASELINES` (the
    names `task_block` saves them under): the majority answer per kind and the question-only prior."""
    majority, prior = majority_answers(train_questions), question_prior(train_questions)
    return {"majority answer": [majority[q.kind] for q in questions],
            "question only": prior_answers(prior, majority, questions)}


def correct(questions: list[Question], predictions: list[str]) -> np.ndarray:
    """Per question 1.0 where the predicted answer matches exactly, else 0.0."""
    return np.asarray([q.answer == p for q, p in zip(questions, predictions, strict=True)], dtype=np.float64)


def accuracy(questions: list[Question], predictions: list[str]) -> dict[str, float]:
    """Exact-match accuracy per kind (`acc/<kind>`) and overall (`accuracy`, over all questions)."""
    hits = correct(questions, predictions)
    out = {f"acc/{k}": float(np.mean([h for q, h in zip(questions, hits) if q.kind == k]))
           for k in KINDS if any(q.kind == k for q in questions)}
    out["accuracy"] = float(np.mean(hits))
    return out


def accuracy_intervals(questions: list[Question], predictions: list[str], seed: int = 0) -> dict[str, list[float]]:
    """95% bootstrap interval of each key of `accuracy`; whole tiles are resampled (a tile's questions share its
    image, so they are not independent items)."""
    from ..evidence import mean_interval

    hits, tiles = correct(questions, predictions), np.asarray([q.tile for q in questions])
    out = {}
    for k in KINDS:
        sel = np.asarray([q.kind == k for q in questions])
        if sel.any():
            out[f"acc/{k}"] = list(mean_interval(hits[sel], tiles[sel], seed=seed))
    out["accuracy"] = list(mean_interval(hits, tiles, seed=seed))
    return out


def task_block(questions: list[Question], answers: dict[str, list[str]], baselines: dict[str, str], seed: int = 0,
               **extra) -> dict:
    """The metrics block of VQA (headline: accuracy) from every model's answers and the baselines' (`baselines`:
    {key in `answers`: name to save it under}), with `ci` (95% interval of each one's accuracy, tiles resampled)
    and `n_test` (questions; `n_tiles`: the tiles they ask about)."""
    name = lambda n: baselines.get(n, n)  # noqa: E731
    scores = {n: accuracy(questions, a) for n, a in answers.items()}
    ci = {name(n): accuracy_intervals(questions, a, seed)["accuracy"] for n, a in answers.items()}
    return {"task": "vqa", "headline": "accuracy", "higher_is_better": True,
            "models": {n: s for n, s in scores.items() if n not in baselines},
            "baselines": {name(n): s for n, s in scores.items() if n in baselines},
            "ci": ci, "n_test": len(questions), "questions": len(questions), "n_tiles": len({q.tile for q in questions}),
            **extra}


@dataclass
class VqaConfig:
    steps: int = 150  # fine-tuning steps of the fusion layers and the answer head
    batch_size: int = 32  # questions per step
    lr: float = 5e-4  # AdamW learning rate (constant)
    train_draws: int = 3  # template draws per training tile (more phrasings of the same facts)
    seed: int = 0  # drives the batches and dropout


class VqaModel(nn.Module):
    """Frozen encoders' outputs -> fine-tuned fusion layers -> MLP over the fused [CLS] -> answer logits."""

    def __init__(self, model: KlipModel, answers: list[str]):
        super().__init__()
        self.encoder = model
        self.answers = answers
        self.fusion = copy.deepcopy(model.fusion)
        hidden = model.config.text_hidden
        self.head = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, len(answers)))

    @torch.no_grad()
    def encode(self, images: torch.Tensor, questions: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Image tokens [N, T, W] and question token embeddings of the frozen encoders."""
        tokens = self.encoder.tokenize(questions)
        image_tokens, _ = self.encoder.image_tokens(images)
        text_embeds, _ = self.encoder.text_tokens(tokens["input_ids"], tokens["attention_mask"])
        return image_tokens, {"embeds": text_embeds, "mask": tokens["attention_mask"]}

    def forward(self, image_tokens: torch.Tensor, text_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Answer logits [B, answers] for questions about the matching images."""
        return self.head(self.fusion(text_embeds, mask, image_tokens)[:, 0])


def fine_tune(model: KlipModel, data: SplitData, cfg: VqaConfig | None = None, progress: bool = True) -> VqaModel:
    """A VqaModel trained on the split's questions (answers seen in training make the vocabulary)."""
    cfg = cfg or VqaConfig()
    torch.manual_seed(cfg.seed)
    questions = make_questions(data, tuple(range(cfg.seed, cfg.seed + cfg.train_draws)))
    answers = sorted({q.answer for q in questions})
    vqa = VqaModel(model, answers)
    image_tokens, text = vqa.encode(data.images, [q.text for q in questions])
    tiles = torch.tensor([q.tile for q in questions])
    labels = torch.tensor([answers.index(q.answer) for q in questions])
    params = [*vqa.fusion.parameters(), *vqa.head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.05)
    g = torch.Generator().manual_seed(cfg.seed)
    vqa.train()
    for _ in tqdm(range(cfg.steps), desc="vqa", disable=not progress):
        b = torch.randint(len(questions), (cfg.batch_size,), generator=g)
        logits = vqa(image_tokens[tiles[b]], text["embeds"][b], text["mask"][b])
        loss = F.cross_entropy(logits, labels[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return vqa.eval()


@torch.no_grad()
def predict(vqa: VqaModel, data: SplitData, questions: list[Question]) -> list[str]:
    """The answer of highest score per question."""
    image_tokens, text = vqa.encode(data.images, [q.text for q in questions])
    tiles = torch.tensor([q.tile for q in questions])
    logits = vqa(image_tokens[tiles], text["embeds"], text["mask"])
    return [vqa.answers[i] for i in logits.argmax(1).tolist()]


def plot_accuracy(metrics: dict[str, dict], path: str | os.PathLike | None = None,
                  intervals: dict[str, dict[str, list[float]]] | None = None):
    """Bars of the accuracy per question kind and overall, one colour per model (the baseline included); error
    bars from `intervals` ({name: accuracy_intervals(...)}) where given."""
    from ..viz import grouped_bars

    labels = {f"acc/{k}": k for k in KINDS} | {"accuracy": "overall"}
    bars = {name: {labels[k]: ci for k, ci in cis.items()} for name, cis in (intervals or {}).items()}
    return grouped_bars({name: {label: m.get(key) for key, label in labels.items()} for name, m in metrics.items()},
                        ylabel="exact-match accuracy", save_to=path, categories=list(labels.values()), ylim=(0, 1.05),
                        intervals=bars)
