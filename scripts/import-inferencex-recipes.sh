#!/usr/bin/env bash
# Records what InferenceX launches for every single-node AgentX job of its master configs whose
# framework kvsweep runs (vllm, sglang), into runners/inferencex-recipes/launches.json, with
# InferenceX's LICENSE and the commit it came from. InferenceX's job scripts stay the source of
# truth: this runs each job's own script, with stub programs first on PATH, and keeps what the
# script hands to the engine (its argv and the environment it exported), exactly as the
# workflow would have started it.
#
# How a job becomes a script run, as InferenceX does it (.github/workflows/benchmark-tmpl.yml
# and runners/launch_*.sh at the recorded commit):
# - the job's matrix entry becomes environment variables (MODEL, MODEL_PREFIX, TP, EP_SIZE,
#   DP_ATTENTION, CONC, SPEC_DECODING, KV_OFFLOADING, KV_OFFLOAD_BACKEND, TOTAL_CPU_DRAM_GB,
#   DURATION, IMAGE, FRAMEWORK, PRECISION, ...), PORT=8888 as the launchers set it;
# - the script is benchmarks/single_node/agentic/<exp-name prefix>_<precision>_<gpu>_<framework>
#   <_mtp>.sh, else the same name without the framework.
# The stubs: the engine (`vllm`, `sglang`, `python3 -m sglang.launch_server`) writes its argv
# and environment to a file and exits, so the script stops at its readiness wait; `hf`,
# `nvidia-smi`, `amd-smi`, `rocm-smi`, `git`, `pip` answer as they would; `uv venv DIR` makes
# DIR/bin/aiperf and DIR/bin/hf. A script that patches files inside its container image or
# probes the GPUs is given a scratch root for the patch and a probe that answers "free".
#
# Needs bash, python3 and kvsweep (KVSWEEP_BIN, default `kvsweep` on PATH), which lists the jobs
# (`kvsweep matrix`, byte for byte InferenceX's generator).
#
# Usage: scripts/import-inferencex-recipes.sh INFERENCEX_CHECKOUT [OUT_DIR]
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || ! -f "$1/benchmarks/benchmark_lib.sh" ]]; then
    echo "usage: $0 INFERENCEX_CHECKOUT [OUT_DIR] (a folder with benchmarks/benchmark_lib.sh)" >&2
    exit 2
fi
inferencex=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${2:-$repo/runners/inferencex-recipes}
kvsweep=${KVSWEEP_BIN:-kvsweep}
mkdir -p "$out"

commit=""
if commit=$(git -C "$inferencex" rev-parse --short=9 HEAD 2>/dev/null); then :; else
    # A copy without .git says its commit in its README ("commit 843c6254f").
    commit=$(grep -o -m 1 'commit [0-9a-f]\{7,40\}' "$inferencex/README.md" 2>/dev/null | cut -d' ' -f2 || true)
fi
if [[ -z "$commit" ]]; then
    echo "cannot tell the InferenceX commit of $inferencex (no git, no 'commit <sha>' in README.md)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/import-inferencex.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
stubs="$work/bin"
mkdir -p "$stubs"

"$kvsweep" matrix "$inferencex/configs/nvidia-master.yaml" "$inferencex/configs/amd-master.yaml" \
    --runner-config "$inferencex/configs/runners.yaml" --scenario-type agentic-coding >"$work/jobs.json"

# The engine stub: argv and environment as JSON to $KVSWEEP_RECORD, then exit 1 (the script
# sees its server die before /health answers, after the command was recorded).
# The interpreter itself, not a shim (pyenv's would add its own variables to the record).
real_python=$(python3 -c 'import sys; print(sys.executable)')
cat >"$stubs/record-engine" <<EOF
#!$real_python
import json, os, sys
with open(os.environ["KVSWEEP_RECORD"], "w") as f:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, f)
sys.exit(1)
EOF
for engine in vllm sglang trtllm-serve; do
    printf '#!/usr/bin/env bash\nexec "%s" %s "$@"\n' "$stubs/record-engine" "$engine" >"$stubs/$engine"
done
# python3: the engine when it is `-m sglang.launch_server` (or `-m vllm.entrypoints...`); pip
# and `-c` probes succeed; anything else runs the real interpreter.
cat >"$stubs/python3" <<EOF
#!/usr/bin/env bash
case "\${1:-} \${2:-}" in
    "-m sglang.launch_server"*|"-m vllm.entrypoints"*) exec "$stubs/record-engine" python3 "\$@" ;;
    "-m pip"*|"-c "*) exit 0 ;;
    # A venv for the replay's tools: its programs succeed and do nothing.
    "-m venv"*)
        dir=\${!#}
        mkdir -p "\$dir/bin"
        for tool in pip aiperf hf; do
            printf '#!/usr/bin/env bash\\nexit 0\\n' >"\$dir/bin/\$tool"
            chmod +x "\$dir/bin/\$tool"
        done
        ln -sf "$stubs/python3" "\$dir/bin/python3"
        ln -sf "$stubs/python3" "\$dir/bin/python"
        exit 0 ;;
esac
exec "$real_python" "\$@"
EOF
cp "$stubs/python3" "$stubs/python"
# Programs the scripts call for their side effects: they succeed and print nothing.
# `sleep` too: the readiness waits poll every few seconds, and nothing here needs the time.
for quiet in git pip pip3 apt-get mooncake_master vllm-router rocm-smi sudo sleep; do
    printf '#!/usr/bin/env bash\nexit 0\n' >"$stubs/$quiet"
done
# GPU probes: one idle GPU with its memory free (scripts that wait for free VRAM go on).
cat >"$stubs/nvidia-smi" <<'EOF'
#!/usr/bin/env bash
case "$*" in
    *memory.used*) echo 0 ;;
    *query-gpu*) echo "0, 0" ;;
esac
exit 0
EOF
cat >"$stubs/amd-smi" <<'EOF'
#!/usr/bin/env bash
case "$*" in
    *json*) echo '[]' ;;
esac
exit 0
EOF
# grep: a Mooncake script looks for an active RDMA rail; the first one is (as on a healthy node).
real_grep=$(command -v grep)
cat >"$stubs/grep" <<EOF
#!/usr/bin/env bash
if [[ "\$*" == "-q ACTIVE /sys/class/infiniband/mlx5_0/ports/1/state" ]]; then exit 0; fi
exec "$real_grep" "\$@"
EOF
# df: an LMCache script checks that /dev/shm holds its host tier; it does.
real_df=$(command -v df)
cat >"$stubs/df" <<EOF
#!/usr/bin/env bash
case "\$*" in
    *--output=avail*/dev/shm*) printf ' Avail\\n 65536G\\n' ;;
    *) exec "$real_df" "\$@" ;;
esac
EOF
# sed -i on a file that is not here (one inside the engine's image): the patch is noted in
# $KVSWEEP_PATCHES, since the recorded command runs unpatched code without it.
real_sed=$(command -v sed)
cat >"$stubs/sed" <<EOF
#!/usr/bin/env bash
if [[ " \$* " == *" -i "* && ! -e "\${!#}" ]]; then
    printf '%s\\n' "\${!#}" >>"\$KVSWEEP_PATCHES"
    exit 0
fi
exec "$real_sed" "\$@"
EOF
# hf download MODEL (no --local-dir): a complete snapshot in $HF_HUB_CACHE, printed, as the
# scripts that start from a cached snapshot check for one.
cat >"$stubs/hf" <<'EOF'
#!/usr/bin/env bash
if [[ "${1:-}" == download && $# -eq 2 ]]; then
    snap="$HF_HUB_CACHE/models--${2//\//--}/snapshots/kvsweep-import"
    mkdir -p "$snap"
    printf '{"weight_map": {"w": "model-1.safetensors"}}\n' >"$snap/model.safetensors.index.json"
    : >"$snap/model-1.safetensors"
    echo "$snap"
fi
exit 0
EOF
# curl: nothing answers (the readiness wait ends when the stub engine has exited).
printf '#!/usr/bin/env bash\nexit 7\n' >"$stubs/curl"
# uv: `uv venv DIR` makes DIR/bin/aiperf and DIR/bin/hf; `uv pip ...` succeeds.
cat >"$stubs/uv" <<'EOF'
#!/usr/bin/env bash
if [[ "${1:-}" == venv ]]; then
    dir=${!#}
    mkdir -p "$dir/bin"
    for tool in aiperf hf python; do
        printf '#!/usr/bin/env bash\nexit 0\n' >"$dir/bin/$tool"
        chmod +x "$dir/bin/$tool"
    done
fi
exit 0
EOF
chmod +x "$stubs"/*

python3 - "$inferencex" "$work" "$out" "$commit" <<'PY'
import concurrent.futures, json, os, re, subprocess, sys

inferencex, work, out, commit = sys.argv[1:5]
stubs = os.path.join(work, "bin")
jobs = json.load(open(os.path.join(work, "jobs.json")))
agentic = os.path.join(inferencex, "benchmarks", "single_node", "agentic")

# Variables of the harness, not of the engine: the script exports them for AIPerf, the
# evaluation or its own bookkeeping. Everything else the script exports is the engine's.
HARNESS = {"PATH", "PWD", "OLDPWD", "SHLVL", "_", "RESULT_DIR", "MODEL_PATH", "GPU_COUNT", "PORT",
           "INFMAX_CONTAINER_WORKSPACE", "GPU_METRICS_CSV", "WEKA_LOADER_OVERRIDE",
           "EVAL_FRAMEWORK", "KVSWEEP_RECORD", "KVSWEEP_PATCHES"}
HARNESS_PREFIXES = ("AIPERF_", "SWEBENCH_", "AGENTIC_", "EVAL_")


def job_key(job):
    """What names a job in the list (its exp-name alone repeats)."""
    return {**{k: job[k] for k in ("runner", "exp-name", "framework", "precision", "tp", "ep",
                                   "dp-attn")},
            "router": (job.get("router") or {}).get("name")}


def script_for(job):
    """The job script, picked as runners/launch_<runner>.sh picks it."""
    gpu = job["runner"].removeprefix("cluster:").split("-")[0]
    base = f'{job["exp-name"].split("_")[0]}_{job["precision"]}_{gpu}'
    spec = "_mtp" if job["spec-decoding"] == "mtp" else ""
    first = f'{base}_{job["framework"]}{spec}.sh'
    if os.path.isfile(os.path.join(agentic, first)):
        return first
    return f'{base}{"_trt" if job["framework"] == "trt" else ""}{spec}.sh'


def job_env(job, result_dir, record):
    backend = job.get("kv-offload-backend") or {}
    env = {
        "PATH": f"{stubs}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.path.join(work, "home"),
        "TMPDIR": os.path.join(work, "tmp"),
        "LANG": "C.UTF-8",
        "KVSWEEP_RECORD": record,
        # The workflow's env (benchmark-tmpl.yml).
        "RANDOM_RANGE_RATIO": "0.8",
        "HF_HUB_CACHE": os.path.join(work, "hf-hub-cache"),
        "EXP_NAME": job["exp-name"],
        "MODEL": job["model"],
        "MODEL_PREFIX": job["model-prefix"],
        "IMAGE": job["image"],
        "FRAMEWORK": job["framework"],
        "PRECISION": job["precision"],
        "TP": str(job["tp"]),
        "PP_SIZE": str(job.get("pp", 1)),
        "DCP_SIZE": str(job.get("dcp-size", 1)),
        "PCP_SIZE": str(job.get("pcp-size", 1)),
        "EP_SIZE": str(job["ep"]),
        "DP_ATTENTION": "true" if job["dp-attn"] else "false",
        "CONC": str(job["conc"]),
        "SPEC_DECODING": job["spec-decoding"],
        "DISAGG": "false",
        "RUN_EVAL": "false",
        "EVAL_ONLY": "false",
        "SCENARIO_TYPE": job["scenario-type"],
        "SCENARIO_SUBDIR": "agentic/",
        "IS_AGENTIC": "1",
        "KV_OFFLOADING": job["kv-offloading"],
        "KV_OFFLOAD_BACKEND": backend.get("name", ""),
        "KV_OFFLOAD_BACKEND_METADATA": json.dumps(backend) if backend else "",
        "ROUTER_METADATA": json.dumps(job["router"]) if job.get("router") else "",
        "TOTAL_CPU_DRAM_GB": str(job["total-cpu-dram-gb"]),
        "DURATION": str(job["duration"]),
        "REQUIRE_POWER": "0",
        "AIPERF_EXPERIMENTAL_FAST": "0",
        "AIPERF_FAILED_REQUEST_THRESHOLD": "0.10",
        "RESULT_DIR": result_dir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPYCACHEPREFIX": os.path.join(work, "pycache"),
        "RUNNER_NAME": job["runner"].removeprefix("cluster:") + "_0",
        "RUNNER_TYPE": job["runner"],
        "GITHUB_WORKSPACE": inferencex,
        # The launchers.
        "PORT": "8888",
        # benchmark_lib.sh's scratch for the replay's tools, in our work folder.
        "AIPERF_RUNTIME_DIR": os.path.join(os.path.dirname(result_dir), "aiperf"),
        "AGENTIC_VENV": os.path.join(os.path.dirname(result_dir), "agentic-venv"),
        "INFMAX_CONTAINER_WORKSPACE": "/workspace",
    }
    env["GPU_COUNT"] = str(job["tp"] * job.get("pp", 1) * job.get("pcp-size", 1))
    return env


def record_job(n, job):
    """Runs one job's script; returns ("recorded", record) or ("failed", why)."""
    script = script_for(job)
    # An exp-name repeats across frameworks, precisions, parallelism and routers.
    key = job_key(job)
    run = os.path.join(work, f"job-{n}")
    os.makedirs(os.path.join(run, "results"))
    record = os.path.join(run, "engine.json")
    patches = os.path.join(run, "patches.txt")
    env = job_env(job, os.path.join(run, "results"), record)
    env["KVSWEEP_PATCHES"] = patches
    given = dict(env)
    try:
        # Run from the checkout's root by a relative path, as the launchers run it from the
        # container's workspace: paths the script derives from $0 stay relative to it.
        proc = subprocess.run(["bash", f"benchmarks/single_node/agentic/{script}"], env=env,
                              cwd=inferencex,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        tail = (proc.stdout + proc.stderr)[-600:]
    except subprocess.TimeoutExpired as e:
        tail = f"timed out: {str(e.stderr)[-400:] if e.stderr else ''}"
    if not os.path.isfile(record):
        return "failed", {**key, "script": script, "why": tail}
    seen = json.load(open(record))
    engine_env = {
        k: v for k, v in sorted(seen["env"].items())
        if given.get(k) != v and k not in HARNESS and not k.startswith(HARNESS_PREFIXES)
    }
    # The checkout is the container's /workspace (the launchers mount it there); a snapshot the
    # hf stub made stands for the model, which the engine loads by its id.
    hf_cache = os.path.join(work, "hf-hub-cache")
    snapshot = re.compile(re.escape(hf_cache) + r"/models--[^/]+/snapshots/kvsweep-import")

    def clean(text):
        text = snapshot.sub(job["model"], text)
        return text.replace(hf_cache, "/mnt/hf_hub_cache").replace(inferencex, "/workspace")

    argv = [clean(a) for a in seen["argv"]]
    engine_env = {k: clean(v) for k, v in engine_env.items()}
    patched = sorted(set(open(patches).read().split())) if os.path.isfile(patches) else []
    # The corpus the replay reads: resolve_trace_source's default for the model prefix unless
    # the script names another.
    loader = seen["env"].get("WEKA_LOADER_OVERRIDE")
    return "recorded", {**key, "script": script, "image": job["image"], "program": argv[0],
                        "args": argv[1:], "env": engine_env, "weka_loader_override": loader,
                        "container_patches": patched}


for d in ("home", "tmp", "pycache"):
    os.makedirs(os.path.join(work, d), exist_ok=True)
single = [j for j in jobs if "prefill" not in j and j["framework"] in ("vllm", "sglang")]
n = len(single)
missing = []
runnable = []
for i, job in enumerate(single):
    script = script_for(job)
    if os.path.isfile(os.path.join(agentic, script)):
        runnable.append((i, job))
    else:
        missing.append({**job_key(job), "script": script})
# The scripts mostly wait on their stubs: a few at once, results kept in the jobs' order.
with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
    results = list(pool.map(lambda ij: record_job(*ij), runnable))
records = [r for kind, r in results if kind == "recorded"]
failed = [r for kind, r in results if kind == "failed"]

job_key_fields = ("runner", "exp-name", "framework", "precision", "tp", "ep", "dp-attn", "router")
# The same launch is shared by many jobs: kept once, named by the jobs that use it.
launches, index = [], {}
for r in records:
    launch = {k: r[k] for k in ("script", "image", "program", "args", "env",
                                "weka_loader_override", "container_patches")}
    body = json.dumps(launch, sort_keys=True)
    if body not in index:
        index[body] = len(launches)
        launches.append(launch)
    r["launch"] = index[body]
jobs_out = [{**{k: v for k, v in r.items() if k in job_key_fields}, "launch": r["launch"]}
            for r in records]
doc = {
    "inferencex_commit": commit,
    "recorded_by": "scripts/import-inferencex-recipes.sh",
    "jobs": jobs_out,
    "launches": launches,
    "unrecorded": missing + [{k: v for k, v in f.items() if k != "why"} for f in failed],
}
with open(os.path.join(out, "launches.json"), "w") as f:
    json.dump(doc, f, indent=1, sort_keys=False)
    f.write("\n")
print(f"{n} single-node vLLM/SGLang AgentX jobs: {len(records)} recorded "
      f"({len(launches)} distinct launches), {len(missing)} without a job script, "
      f"{len(failed)} whose script did not reach the engine")
for m in missing:
    print(f"  no script {m['script']}: {m['runner']} {m['exp-name']}")
for f in failed:
    last = f["why"].strip().splitlines()[-1:] or [""]
    print(f"  did not reach the engine: {f['script']} {f['runner']} {f['exp-name']}: {last[0]}")
PY
cp "$inferencex/LICENSE" "$out/LICENSE"
echo "InferenceX commit $commit -> $out/launches.json"
