#!/usr/bin/env bash
# The GPU checks in one command, for a machine lent for a few minutes (see docs/speed.md):
#
#   benchmarks/gpu_check.sh PARAMS RATINGS OUT [PARALLEL]
#
# 1. tests/test_gpu.py (skipped everywhere else);
# 2. benchmarks/speed.py --device cuda at ML-20M shape;
# 3. one ML-1M study's wall time without DVC: PARAMS is its composed params.yaml (for example
#    `dvc exp run -S study=ml1m_paper` writes one; any data.source in it is replaced by RATINGS),
#    download and prepare, the first row's first seed trained alone, the other runs PARALLEL at a
#    time on the one GPU (runtime.threads 1 each), then evaluate (PARALLEL rows at a time), the
#    three baselines side by side, and aggregate.
#    Each run's start and end go to OUT/runs.tsv, so a study cut off by a deadline still tells
#    its throughput.
# Each part has its own time limit (TEST_S, SPEED_S, STUDY_S seconds) so that one slow part
# leaves the others their share. Needs python3 with torch (CUDA), numpy, scipy, pandas, pyarrow,
# typer, rich, matplotlib and pyyaml; neither DVC nor an install of this package.
set -u
params=$(realpath "$1"); ratings=$(realpath "$2"); out=$(realpath "$3"); parallel=${4:-12}
repo=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONUNBUFFERED=1 PYTHONPATH=$repo
mkdir -p "$out"
multvae() { python3 -c 'import sys; from stages.cli import app; sys.argv[0] = "multvae"; app()' "$@"; }
export -f multvae
stamp() { date +%s.%N; }

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__,
  torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")'
nproc

echo "== tests/test_gpu.py"
(cd "$repo" && timeout "${TEST_S:-150}" python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py) \
  2>&1 | tee "$out/test_gpu.log"

echo "== benchmarks/speed.py --device cuda"
(cd "$repo" && timeout "${SPEED_S:-200}" python3 benchmarks/speed.py --device cuda --no-small --no-prepare) \
  2>&1 | tee "$out/speed.log"

echo "== ML-1M study, $parallel runs at a time"
study=$(mktemp -d)
tar -C "$repo" --exclude=./.venv --exclude=./.git -cf - . | tar -C "$study" -xf -
cd "$study" || exit 1
rm -rf data/raw data/prepared models dvclive metrics/per_user metrics/variants .checkpoints
python3 - "$params" "$ratings" <<'EOF'
import sys, yaml
params = yaml.safe_load(open(sys.argv[1]))
params["data"]["source"] = sys.argv[2]
params["runtime"].update(threads=1, checkpoint_seconds=0)
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
EOF
deadline=$(( $(date +%s) + ${STUDY_S:-240} ))
begin=$(stamp)
multvae download --no-progress && multvae prepare || exit 1
prepared=$(stamp)
python3 -c 'import yaml; p = yaml.safe_load(open("params.yaml"))
for v in p["study"]["rows"]:
    for f in p["data"]["folds"]:
        for s in p["train"]["seeds"]:
            print(v, s, f)' >runs.txt
echo "$(wc -l <runs.txt) runs; prepared in $(python3 -c "print(round($prepared - $begin, 1))") s"
one() {  # variant seed fold: train one run, log its start and end
  local start; start=$(date +%s.%N)
  timeout $(( deadline - $(date +%s) )) python3 -c 'import sys; from stages.cli import app; sys.argv[0] = "multvae"; app()' \
    train "$1" --seed "$2" --fold "$3" >"logs.$1.$2.$3" 2>&1
  local rc=$?
  echo -e "$1\t$2\t$3\t$start\t$(date +%s.%N)\t$rc" >>"$out/runs.tsv"
}
export -f one; export deadline out
echo -e "variant\tseed\tfold\tstart\tend\trc" >"$out/runs.tsv"
head -1 runs.txt | xargs -L1 bash -c 'one "$@"' _
tail -n +2 runs.txt | xargs -P "$parallel" -L1 bash -c 'one "$@"' _
trained=$(stamp)
done_runs=$(awk -F'\t' 'NR > 1 && $6 == 0' "$out/runs.tsv" | wc -l)
echo "trained $done_runs of $(wc -l <runs.txt) runs in $(python3 -c "print(round($trained - $prepared, 1))") s"
if [ "$done_runs" -eq "$(wc -l <runs.txt)" ]; then
  python3 -c 'import yaml; print(*yaml.safe_load(open("params.yaml"))["study"]["rows"], sep="\n")' |
    xargs -P "$parallel" -I{} bash -c 'multvae evaluate {} >logs.evaluate.{} 2>&1' || exit 1
  evaluated=$(stamp)
  multvae popularity & multvae ease & multvae rp3beta & wait
  multvae aggregate || exit 1
  finished=$(stamp)
  python3 -c "print('evaluate', round($evaluated - $trained, 1), 's; baselines and aggregate',
    round($finished - $evaluated, 1), 's; whole study', round($finished - $begin, 1), 's')"
  cp metrics/table.md "$out/table.md"
fi
tail -n 3 logs.* >"$out/run_logs.txt" 2>/dev/null
python3 - "$out/runs.tsv" <<'EOF'
import sys, pandas as pd
runs = pd.read_csv(sys.argv[1], sep="\t")
runs["seconds"] = runs["end"] - runs["start"]
print(runs.groupby("rc")["seconds"].describe().round(1).to_string())
print("first run alone:", round(runs["seconds"].iloc[0], 1), "s")
EOF
