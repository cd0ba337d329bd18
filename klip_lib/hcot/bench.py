"""`klip bench caption`: captions per second.

`--backend template` (default): realise, validate, calibrate and fact-check on one core.
`--backend openai`: an OpenAI-compatible server (`--base-url`, or `--serve` to start the local llama.cpp server)
at each `--concurrency` level: captions/s and completion and prompt tokens/s as the server reports them.
`--accuracy` then asks the same tiles at L0 and through the HCoT chain and prints the fact-checked accuracy of
L0, the HCoT draft and HCoT+L5 (evaluate.compare_levels).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time

from ..errors import InputError, positive_float, positive_int
from .backends import OpenAIBackend, TemplateBackend
from .generate import CaptionConfig, caption_batch, load_index_facts


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    d = CaptionConfig()
    parser.add_argument("--index", default="", help="index.parquet to caption (default: the smoke dataset of "
                        "reports/bench, simulated when missing)")
    parser.add_argument("--backend", choices=("template", "openai"), default="template")
    parser.add_argument("--captions", type=positive_int, default=2000,
                        help="template: captions to make (tiles repeat with new seeds)")
    parser.add_argument("--level", choices=("L0", "L4", "L5"), default="L5",
                        help="HCoT level (the template backend runs at L4 or L5)")
    parser.add_argument("--tiles", type=positive_int, default=8, help="openai: tiles captioned at each concurrency level")
    parser.add_argument("--concurrency", default="1,2,4", help="openai: comma-separated requests in flight")
    parser.add_argument("--base-url", default="", help="openai: server URL, e.g. http://localhost:8000/v1")
    parser.add_argument("--model", default="", help="openai: served model name (--serve: smollm2)")
    parser.add_argument("--serve", action="store_true",
                        help="openai: start the local llama.cpp server (SmolLM2-135M) for the benchmark")
    parser.add_argument("--max-new-tokens", type=positive_int, default=d.max_new_tokens,
                        help="openai: the answer may use 25x this many tokens")
    parser.add_argument("--timeout", type=positive_float, default=300.0, help="openai: seconds per request")
    parser.add_argument("--json-mode", action=argparse.BooleanOptionalAction, default=d.json_mode,
                        help="openai: ask for response_format json_object (--no-json-mode: plain prompting)")
    parser.add_argument("--retries", type=int, default=d.retries,
                        help="openai: re-asks of a malformed answer (each is one more request)")
    parser.add_argument("--threads", type=int, default=0, help="--serve: the server's CPU threads (0: every core)")
    parser.add_argument("--accuracy", action="store_true",
                        help="openai: also measure L0 vs HCoT vs HCoT+L5 fact accuracy on the same tiles")


def bench(args: argparse.Namespace) -> int:
    if args.index:
        index = args.index
    else:  # the smoke preset's tiles, simulated for the bench (not a run's cached dataset)
        from ..data import SimConfig, simulate_dataset
        from ..presets import section

        index = simulate_dataset(tempfile.mkdtemp(prefix="klip-bench-"), SimConfig(**section("smoke", "data")),
                                 progress=False)
    facts, _ = load_index_facts(index)
    if not facts:
        raise InputError(f"{index} has no tiles with facts to caption: give the index of a simulated dataset")
    if args.backend == "openai":
        return bench_openai(args, facts)
    if args.level == "L0":
        raise InputError("the template backend runs at L4 or L5: give --level L4 or L5, or --backend openai")
    backend = TemplateBackend()
    made, seed = 0, 0
    start, cpu = time.perf_counter(), time.process_time()
    while made < args.captions:
        batch = facts[: args.captions - made]
        records = caption_batch(batch, backend, args.level, seed=seed)
        made += len(records)
        seed += 1
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    ok = sum(all(v is not False for v in r["factcheck"].values()) for r in records)
    print(f"caption: {made} template captions at {args.level} in {seconds:.2f} s wall = {made / seconds:.0f} "
          f"captions/s ({made / cpu:.0f} per CPU-second; last batch fully fact-checked: {ok}/{len(records)})")
    return 0


def concurrency_levels(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; anything but positive integers raises InputError."""
    try:
        return [positive_int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise InputError(f"--concurrency {text!r}: give positive integers separated by commas, e.g. 1,2,4") from None


def bench_openai(args: argparse.Namespace, facts: list[dict]) -> int:
    """Caption the first `--tiles` tiles once per concurrency level and print the rates."""
    from .evaluate import compare_levels
    from .server import LlamaServer, ServerConfig

    levels = concurrency_levels(args.concurrency)
    if args.serve == bool(args.base_url):
        raise InputError("--backend openai: give --base-url URL or --serve (not both)")
    server = LlamaServer(ServerConfig(n_threads=args.threads)) if args.serve else contextlib.nullcontext()
    tiles = facts[: args.tiles]
    with server:
        base_url = server.base_url if args.serve else args.base_url
        model = args.model or (server.model if args.serve else "")
        print(f"caption openai: {len(tiles)} tiles at {args.level} per level, model {model!r} at {base_url}, "
              f"json mode {'on' if args.json_mode else 'off'}, answers up to {25 * args.max_new_tokens} tokens")
        for concurrency in levels:
            backend = OpenAIBackend(base_url=base_url, model=model, concurrency=concurrency, timeout_s=args.timeout,
                                    max_tokens=25 * args.max_new_tokens, json_mode=args.json_mode)
            start = time.perf_counter()
            records = caption_batch(tiles, backend, args.level, seed=0, retries=args.retries)
            seconds = time.perf_counter() - start
            failed = sum(r["status"] == "failed" for r in records)
            used = backend.usage
            print(f"  concurrency {concurrency}: {len(records)} captions in {seconds:.1f} s = "
                  f"{len(records) / seconds:.3f} captions/s, {used['completion_tokens'] / seconds:.1f} tokens/s "
                  f"({used['completion_tokens']} completion + {used['prompt_tokens']} prompt tokens = "
                  f"{used['prompt_tokens'] / seconds:.0f} prompt tokens/s; {failed} failed)")
        if args.accuracy:
            backend = OpenAIBackend(base_url=base_url, model=model, concurrency=max(levels), timeout_s=args.timeout,
                                    max_tokens=25 * args.max_new_tokens, json_mode=args.json_mode)
            result = compare_levels(tiles, backend, retries=args.retries)
            mean = "  ".join(f"{c} {m:.3f}" if m is not None else f"{c} n/a" for c, m in result["mean"].items())
            answered = ", ".join(f"{c} {a:.0%}" for c, a in result["answered"].items())
            print(f"  accuracy over {len(tiles)} tiles (mean over dimensions): {mean}; valid JSON answers: "
                  f"{answered}; dimensions repaired by L5: {result['repaired']}")
    return 0
