#!/usr/bin/env bash
# What the llama.cpp server tests (tests/test_llm_server.py, marker llm_server) need in the project venv:
# llama-cpp-python built from its source release (no wheel exists for this platform; about 6 min on a quiet 2-core
# machine, 13 min wall = 11.5 CPU-minutes on a busy one) plus the packages its OpenAI-compatible server imports.
# Run after `make venv`, before `make test` (.ci/run does).
# Idempotent: does nothing when the pinned versions are installed; the built wheel is kept in $LLM_WHEEL_DIR
# (default .venv/wheels) and pip's own wheel cache, so a venv rebuilt on the same machine does not compile again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
LLAMA_CPP_VERSION=0.3.36
SERVER_DEPS=(uvicorn==0.54.0 fastapi==0.165.0 starlette==1.10.0 sse-starlette==3.7.0
             pydantic-settings==2.16.3 starlette-context==0.5.1 diskcache==5.6.3)
WHEEL_DIR=${LLM_WHEEL_DIR:-.venv/wheels}

if [ ! -x "$PY" ]; then
    echo "llm-server-deps: $PY is missing; run \`make venv\` first" >&2
    exit 1
fi
if "$PY" - "$LLAMA_CPP_VERSION" <<'EOF'
import sys
from importlib.metadata import version
import llama_cpp, uvicorn, fastapi, sse_starlette, pydantic_settings, starlette_context  # noqa: F401
sys.exit(version("llama-cpp-python") != sys.argv[1])
EOF
then
    echo "llm-server-deps: llama-cpp-python $LLAMA_CPP_VERSION and server packages already installed"
    exit 0
fi 2>/dev/null

mkdir -p "$WHEEL_DIR"
wheel=$(ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
    echo "llm-server-deps: building llama-cpp-python $LLAMA_CPP_VERSION from source (several minutes on 2 cores)"
    # Portable AVX2 build without the multimodal library: -march=native also turns on AMX, whose repacked
    # weights crash with SIGILL (illegal instruction) on the first prompt in this sandbox.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" -m pip wheel --no-deps --no-binary llama-cpp-python \
        -w "$WHEEL_DIR" "llama-cpp-python==$LLAMA_CPP_VERSION"
    wheel=$(ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl | head -1)
fi
"$PY" -m pip install -q -c constraints.txt "$wheel" "${SERVER_DEPS[@]}"
"$PY" -c "import llama_cpp; print('llm-server-deps: llama-cpp-python', llama_cpp.__version__, 'installed')"
