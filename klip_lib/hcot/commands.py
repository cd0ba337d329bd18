"""`klip caption`: HCoT captions for every tile of an index, appended to a JSONL file (resumable)."""

from __future__ import annotations

import argparse
import json

from ..errors import positive_float, positive_int
from .backends import BACKENDS
from .generate import CaptionConfig, generate_captions
from .schema import LEVELS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = CaptionConfig()
    parser.add_argument("--index", required=True, help="index.parquet of a dataset (klip simulate --out DIR)")
    parser.add_argument("--out", required=True, help="captions JSONL to append to (tiles already there are skipped)")
    parser.add_argument("--backend", choices=BACKENDS, default=d.backend)
    parser.add_argument("--level", choices=LEVELS, default=d.level, help="HCoT level (L5 = chain + calibration)")
    parser.add_argument("--model", default=d.model, help="transformers: model folder or .gguf; openai: model name")
    parser.add_argument("--base-url", default=d.base_url, help="openai: server URL, e.g. http://localhost:8000/v1")
    parser.add_argument("--api-key-env", default=d.api_key_env,
                        help="openai: environment variable holding the API key (the key itself is never a flag)")
    parser.add_argument("--concurrency", type=positive_int, default=d.concurrency, help="openai: requests in flight")
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="tiles per backend call")
    parser.add_argument("--max-new-tokens", type=positive_int, default=d.max_new_tokens, help="LLM tokens per dimension")
    parser.add_argument("--timeout", type=positive_float, default=d.timeout_s, help="openai: seconds per request")
    parser.add_argument("--json-mode", action=argparse.BooleanOptionalAction, default=d.json_mode,
                        help="openai: ask the server for a JSON object (response_format); --no-json-mode prompts "
                             "plainly (no grammar-constrained decoding), the answer is validated either way")
    parser.add_argument("--retries", type=int, default=d.retries, help="re-asks of a malformed LLM answer")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--retry-failed", action="store_true", help="redo tiles whose record says failed")
    parser.add_argument("--split", nargs="+", default=[], choices=("train", "val", "test"),
                        help="caption only the tiles of these splits (default: every tile)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(args: argparse.Namespace) -> int:
    cfg = CaptionConfig(backend=args.backend, level=args.level, model=args.model, base_url=args.base_url,
                        api_key_env=args.api_key_env, concurrency=args.concurrency, batch_size=args.batch_size,
                        max_new_tokens=args.max_new_tokens, timeout_s=args.timeout, json_mode=args.json_mode,
                        retries=args.retries, seed=args.seed)
    summary = generate_captions(args.index, args.out, cfg, retry_failed=args.retry_failed,
                                progress=not args.no_progress, splits=tuple(args.split))
    print(json.dumps(summary))
    return 1 if summary["failed"] else 0
