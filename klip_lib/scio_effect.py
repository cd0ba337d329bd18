"""Does SCIO make a better model? Pretraining arms on noisy captions, scored downstream (issue 19, part 4).

Evaluation code, like the harness it builds on (`scio_inject`): nothing in the training path imports it.

Five arms pretrain the same model (the preset's, same seed and step count) on the run's training tiles and differ
only in the captions they learn from:

- `clean`: the captions as captioned (no planted error): the ceiling;
- `noisy`: the same captions corrupted by a noise profile (`scio_inject.noisy_corpus`, e.g. `expert`), BLIP-like
  losses (ITC+ITM+MLM), no SCIO;
- `released`, `calibrated`: the noisy captions through SCIO's rounds p0/p1/p2 with that strategy
  (`scio.run_rounds`, the steps split as `scio.default_steps` does);
- `no-screening`: the noisy captions through the released strategy's rounds with nothing flagged (strategy `none`):
  each round restarts the optimizer and its warm-up, so this control tells what screening adds from what the
  schedule does.

Each arm is scored on the run's test split by the downstream protocols of notebooks 09-11: retrieval (zero-shot,
ITC + ITM re-ranking), captioning (decoder fine-tuned on the clean training captions) and VQA (fusion and answer head
fine-tuned). Beside each score its 95% bootstrap interval, and each arm's difference from `noisy` (the SCIO arms'
also from `no-screening`) with a paired interval over the same test items: a difference whose interval excludes 0 is an effect; one that
holds 0 is "no difference shown" at this size.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .evidence import difference_verdict, metric_interval, paired_difference

ARMS = ("clean", "noisy", "no-screening", "released", "calibrated")
STRATEGY = {"released": "released", "calibrated": "calibrated", "no-screening": "none"}  # SCIO arms -> strategy
REFERENCE = "noisy"  # the arm every other one is compared with: the same noisy captions without SCIO
CONTROL = "no-screening"  # the SCIO arms' schedule-matched control (the released rounds, nothing flagged)
TASKS = ("retrieval", "captioning", "vqa")
COLORS = {"clean": "#8c8c8c", "noisy": "#4c72b0", "no-screening": "#8fa8d0"}  # SCIO arms: orange


@dataclass
class EffectConfig:
    noise: str = "expert"  # caption noise profile (scio_inject.NOISE_PROFILES) of the noisy arms
    copies: int = 1  # corrupted copies of each training caption (1: one noisy caption per view, as captioned)
    steps: int = 0  # pretraining steps of every arm (0: the preset's)
    arms: tuple[str, ...] = ARMS
    tasks: tuple[str, ...] = TASKS
    caption_steps: int = 300  # captioning decoder fine-tuning steps per arm (notebook 10's `steps`)
    vqa_steps: int = 150  # VQA fine-tuning steps per arm (notebook 11's `steps`)
    k_test: int = 8  # retrieval: ITC candidates per query re-ranked by ITM

    def __post_init__(self):
        unknown = [a for a in self.arms if a not in ARMS] + [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown arm or task {unknown}: arms are {', '.join(ARMS)}; tasks {', '.join(TASKS)}")
        if REFERENCE not in self.arms:
            raise ValueError(f"the arms must include {REFERENCE!r}: every other arm is compared with it")


# pretraining ------------------------------------------------------------------------------------------
def pretrain_arms(shard_dir, captions, out_dir, preset: str, seed: int, cfg: EffectConfig,
                  configs: tuple | None = None) -> dict[str, dict]:
    """Pretrain every arm of `cfg` into `out_dir/<arm>/model` (the preset's model and training, or `configs`:
    (KlipConfig, TrainConfig)); {arm: {"model": KlipModel, "seconds", "steps", "rounds" (SCIO arms: one log row per
    round), "captions" (the corpus it started from)}}. An arm whose folder holds a model trained with the same
    settings (`arm.json`) is loaded instead of trained again."""
    import torch
    from tqdm.auto import tqdm

    from .model import KlipModel
    from .scio import ScioConfig, default_steps, run_rounds, write_corpus
    from .scio_inject import noisy_corpus
    from .train import configs_for, pretrain

    model_config, train_cfg = configs or configs_for(preset, seed=seed)
    steps = cfg.steps or train_cfg.steps
    train_cfg = dataclasses.replace(train_cfg, objective="itc+itm+mlm", steps=steps,
                                    warmup_steps=min(train_cfg.warmup_steps, steps))
    corpus = noisy_corpus(shard_dir, captions, model_config, ScioConfig(), seed, cfg.noise, cfg.copies)
    out_dir = Path(out_dir)
    texts = {"clean": write_corpus(corpus.clean * cfg.copies, out_dir / "clean_captions.jsonl", proofread=False),
             "noisy": write_corpus(corpus.data.train, out_dir / "noisy_captions.jsonl", proofread=False)}
    settings = {"preset": preset, "seed": seed, "noise": corpus.rates, "copies": cfg.copies, "steps": train_cfg.steps,
                "model": dataclasses.asdict(model_config), "train": dataclasses.asdict(train_cfg),
                "shards": str(shard_dir), "captions": str(captions)}
    settings = json.loads(json.dumps(settings, default=float))  # as arm.json holds it (tuples as lists)
    arms = {}
    for arm in tqdm(cfg.arms, desc="pretrain arms"):
        folder, t0 = out_dir / arm, time.perf_counter()
        record = folder / "arm.json"
        saved = json.loads(record.read_text()) if record.exists() else {}
        if saved.get("settings") == settings:
            arms[arm] = {**saved, "model": KlipModel.from_pretrained(folder / "model"), "loaded": True}
            continue
        torch.manual_seed(train_cfg.seed)
        model, rounds = KlipModel(model_config), []
        if arm in texts:
            pretrain(corpus.data.shard_dir, folder, model_config, train_cfg, captions=texts[arm],
                     resume=False, model=model, progress=False)
        else:
            scio_cfg = ScioConfig(strategy=STRATEGY[arm], steps=default_steps(train_cfg.steps, STRATEGY[arm]))
            scio_train = dataclasses.replace(train_cfg, objective="klip")
            model, rounds = run_rounds(corpus.data, folder, model_config, scio_train, scio_cfg, model=model)
        model.save_pretrained(folder / "model")
        saved = {"arm": arm, "steps": train_cfg.steps, "seconds": round(time.perf_counter() - t0, 1),
                 "rounds": [{k: r[k] for k in ("round", "steps", "flag_rate", "edited")} for r in rounds],
                 "captions": str(texts.get(arm, texts["noisy"])), "settings": settings}
        record.write_text(json.dumps(saved, indent=1, default=float) + "\n")
        arms[arm] = {**saved, "model": model, "loaded": False}
    return arms


# scoring ----------------------------------------------------------------------------------------------
def comparisons(arms) -> list[tuple[str, str]]:
    """(arm, reference) pairs scored by paired differences: every arm against `noisy`; the SCIO arms also against
    the `no-screening` control, where it was trained."""
    pairs = [(a, REFERENCE) for a in arms if a != REFERENCE]
    return pairs + [(a, CONTROL) for a in STRATEGY if a != CONTROL and a in arms and CONTROL in arms]


def nest(diffs: dict[tuple[str, str], dict]) -> dict[str, dict[str, dict]]:
    """{(arm, reference): difference} -> {reference: {arm: difference}}."""
    out: dict[str, dict[str, dict]] = {}
    for (arm, ref), d in diffs.items():
        out.setdefault(ref, {})[arm] = d
    return out


def score_retrieval(models: dict, test, cfg: EffectConfig, seed: int) -> tuple[dict, dict]:
    """(task block, paired r_mean differences {reference: {arm: difference}} (`comparisons`), resampling test
    images)."""
    from .tasks import retrieval

    results = {n: retrieval.evaluate_retrieval(m, test, retrieval.RetrievalConfig(k_test=cfg.k_test))
               for n, m in models.items()}
    texts, text_image = retrieval.retrieval_texts(test)
    block = retrieval.task_block(results, test, retrieval.random_ranking_recall(len(test.tile_ids), text_image),
                                 seed, k_test=cfg.k_test)
    stat = {n: retrieval.recall_statistic(r["ranks"], r["text_image"]) for n, r in results.items()}
    diffs = {}
    for a, b in comparisons(models):
        ci = metric_interval(len(test.tile_ids), lambda idx, s=stat[a], r=stat[b]: s(idx)["r_mean"] - r(idx)["r_mean"],
                             seed=seed)
        diffs[a, b] = difference_verdict(results[a]["metrics"]["r_mean"] - results[b]["metrics"]["r_mean"], ci)
    return block, nest(diffs)


def score_captioning(models: dict, train, test, cfg: EffectConfig, seed: int) -> tuple[dict, dict]:
    """(task block with the most-common-facts and random captions as baselines, paired CIDEr differences over tiles
    {reference: {arm: difference}})."""
    from .tasks import caption_scores, captioning

    ccfg = captioning.CaptionConfig(steps=cfg.caption_steps, seed=seed)
    captions = caption_scores.baseline_captions(train, len(test.tile_ids), seed)
    for n, m in models.items():
        captions[n] = captioning.generate(captioning.fine_tune(m, train, ccfg, progress=False), test.images, ccfg)
    per_tile = {n: caption_scores.cider_items(c, test) for n, c in captions.items()}
    block = caption_scores.task_block(captions, test, seed=seed, items=per_tile, steps=cfg.caption_steps)
    return block, nest({(a, b): paired_difference(per_tile[a], per_tile[b], seed=seed) for a, b in comparisons(models)})


def score_vqa(models: dict, train, test, cfg: EffectConfig, seed: int) -> tuple[dict, dict]:
    """(task block with the majority and question-only baselines, paired accuracy differences {reference: {arm:
    difference}}, whole tiles resampled)."""
    from .tasks import vqa

    vcfg = vqa.VqaConfig(steps=cfg.vqa_steps, seed=seed)
    questions = vqa.make_questions(test, (seed,))
    answers = vqa.baseline_answers(vqa.make_questions(train, tuple(range(seed, seed + vcfg.train_draws))), questions)
    for n, m in models.items():
        answers[n] = vqa.predict(vqa.fine_tune(m, train, vcfg, progress=False), test, questions)
    block = vqa.task_block(questions, answers, vqa.BASELINES, seed, steps=cfg.vqa_steps)
    tiles, hits = [q.tile for q in questions], {n: vqa.correct(questions, answers[n]) for n in models}
    return block, nest({(a, b): paired_difference(hits[a], hits[b], tiles, seed=seed) for a, b in comparisons(models)})


def scio_effect(shard_dir, captions, train, test, out_dir, preset: str = "smoke", seed: int = 0,
                cfg: EffectConfig | None = None, configs: tuple | None = None) -> dict:
    """Pretrain the arms (`pretrain_arms`) and score them on `test` (a SplitData; `train` is the split the
    captioning and VQA heads are fine-tuned on; `configs` as in `pretrain_arms`). Returns {"arms": {arm: what its
    pretraining logged}, "tasks": {task: block}, "differences": {task: {reference: {arm: paired difference}}}
    (`comparisons`),
    "config", "noise"}."""
    from tqdm.auto import tqdm

    cfg = cfg or EffectConfig()
    arms = pretrain_arms(shard_dir, captions, out_dir, preset, seed, cfg, configs)
    models = {a: arms[a].pop("model").eval() for a in cfg.arms}
    scorers = {"retrieval": lambda: score_retrieval(models, test, cfg, seed),
               "captioning": lambda: score_captioning(models, train, test, cfg, seed),
               "vqa": lambda: score_vqa(models, train, test, cfg, seed)}
    tasks, diffs = {}, {}
    for task in tqdm(cfg.tasks, desc="score arms"):
        block, diffs[task] = scorers[task]()
        tasks[task] = {**block, "compares": "methods", "reference": REFERENCE}  # arms are caption treatments
    noise = next(iter(arms.values()))["settings"]["noise"]
    return {"arms": arms, "tasks": tasks, "differences": diffs, "config": dataclasses.asdict(cfg), "noise": noise}


# tables and plots -------------------------------------------------------------------------------------
def effect_table(result: dict) -> list[dict]:
    """One row per task and arm: its headline with interval and its paired differences from `noisy` and (SCIO arms)
    from the `no-screening` control, each with its interval and verdict."""
    from .evidence import format_interval

    rows = []
    for task, block in result["tasks"].items():
        key, diffs = block["headline"], result["differences"][task]
        for arm, scores in block["models"].items():
            row = {"task": task, "arm": arm, "metric": key,
                   "score [95% CI]": format_interval(scores[key], block["ci"].get(arm))}
            for ref in (REFERENCE, CONTROL):
                d = diffs.get(ref, {}).get(arm)
                row[f"vs {ref} [95% CI]"] = "" if d is None else \
                    f"{format_interval(d['difference'], d['ci'])} {d['verdict']}"
            rows.append({**row, "n_test": block["n_test"]})
    return rows


def plot_effect(result: dict, save_to=None):
    """One panel per task: each arm's headline with its 95% interval, the task's baseline(s) as dashed lines."""
    import matplotlib.pyplot as plt

    from .evidence import baselines

    tasks = result["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, (task, block) in zip(axes[0], tasks.items()):
        key, arms = block["headline"], list(block["models"])
        values = [block["models"][a][key] for a in arms]
        ci = [block["ci"].get(a) or [v, v] for a, v in zip(arms, values)]
        err = np.abs(np.array([[lo, hi] for lo, hi in ci]).T - np.array(values))
        ax.bar(arms, values, yerr=err, capsize=4, color=[COLORS.get(a, "#dd8452") for a in arms])
        for i, (name, scores) in enumerate(baselines(block).items()):
            if scores.get(key) is not None:
                ax.axhline(scores[key], ls="--", lw=1, color=f"C{i + 2}", label=name)
        ax.set_title(f"{task} {key} (n={block['n_test']})")
        ax.tick_params(axis="x", rotation=20)
        if baselines(block):
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("pretraining on noisy captions: with SCIO, without (noisy), clean captions (ceiling); 95% CI")
    fig.tight_layout()
    if save_to:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save_to, dpi=100)
    return fig

