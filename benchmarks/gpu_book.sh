#!/usr/bin/env bash
# The `full` profile chapter by chapter on a lent GPU machine (the `device` tool): PyTorch there, but
# no Jupyter stack and no package registry, at most 64 MiB carried per call and 10 minutes per command.
#
#   here:        benchmarks/gpu_book.sh prepare          # wheels and dataset mirrors into .gpu/ (git-ignored)
#   on the GPU:  bash benchmarks/gpu_book.sh run GROUP <commit>
#   here again:  benchmarks/gpu_book.sh collect DIR      # unpack what a call brought back into results/full/
#
# A GROUP is a set of chapters that fits one 10-minute call and one dataset (the two mirrors together
# are over the 64 MiB a call may carry). The GPU machine keeps data/ (decoded datasets, trained models,
# job results) between calls while it stays warm (30 s), so run the groups back to back: a chapter that
# needs both datasets comes after a group that decoded the other one. Carry `.gpu/wheels` and the
# group's mirror (`.gpu/mirror-mnist` or `.gpu/mirror-cifar`); each call leaves, in $OUT:
#   full-<group>.tar   results/full/** (run records) and data/models/*.json (model cards)
#   timings-<group>.jsonl   the timed events (salbook.timings) of the call
# `python benchmarks/book_time.py --profile full --from-timings .gpu/timings-full.jsonl` turns the collected
# timings into benchmarks/results/book_time-full.json.
#
# Groups (each call must stay under 600 s):
#   group    chapters                   carry                 estimated seconds (unmeasured)
#   mnist-a: mpe/01 mpe/02 roar/02      .gpu/mirror-mnist     40 + 45 + 110
#   mnist-b: roar/03                    .gpu/mirror-mnist     310 (grid in 8 worker processes)
#   cifar-a: mpe/03 mpe/04 mpe/05       .gpu/mirror-cifar     205 + 70 + 55
#   cifar-b: pertmap/01 pertmap/02      .gpu/mirror-cifar     195 + 155
#   cifar-c: decoys/01 decoys/02        .gpu/mirror-cifar     125 + 245
#   cifar-d: robust/01                  .gpu/mirror-cifar     225
#   cifar-e: roar/04                    .gpu/mirror-cifar     335 (grid in 8 worker processes)
#   both:    roar/01 roar/05            .gpu/mirror-mnist     75 + 145 (after a cifar group, same warm machine)
#   cifar-f: leaderboard/01             .gpu/mirror-cifar     450 (44 jobs in 8 worker processes)
# The estimates (about 46 minutes in all from a fresh machine) come from the cpu profile's timings
# scaled by hand; no full run has been timed yet, so the first lent GPU should run every group and
# commit the timings it brings back (book_time.py --from-timings).
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A CHAPTERS=(
  [mnist-a]="mpe/01_* mpe/02_* roar/02_*"
  [mnist-b]="roar/03_*"
  [cifar-a]="mpe/03_* mpe/04_* mpe/05_*"
  [cifar-b]="pertmap/*"
  [cifar-c]="decoys/*"
  [cifar-d]="robust/*"
  [cifar-e]="roar/04_*"
  [both]="roar/01_* roar/05_*"
  [cifar-f]="leaderboard/*"
)
# what the library imports that the GPU machine's image lacks (its list: the device tool's KINDS.md)
WHEELS="captum==0.9.0 zennit==0.5.1 quantus==0.6.0 torchattacks==3.5.1 rai-toolbox==0.2.1 cachetools==8.0.2"

prepare() {
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  mkdir -p .gpu/wheels .gpu/mirror-mnist .gpu/mirror-cifar
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .gpu/wheels $WHEELS
  local mirror=${SALBOOK_MIRROR:-../shared/datasets}
  cp "$mirror/mnist.npz" .gpu/mirror-mnist/
  cp "$mirror/cifar10_jpeg.npz" .gpu/mirror-cifar/
  du -sh .gpu/*
}

run() {
  local group=$1 commit=$2 out=${OUT:-/tmp/out}
  [[ -n ${CHAPTERS[$group]:-} ]] || { echo "unknown group $group: ${!CHAPTERS[*]}"; exit 2; }
  if [[ ! -d .gpu/site ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target .gpu/site .gpu/wheels/*.whl
  fi
  mkdir -p .gpu/mirror  # the mirrors carried by this call and by earlier calls on this warm machine
  for f in .gpu/mirror-*/*.npz; do ln -sf "$PWD/$f" .gpu/mirror/; done
  export PYTHONPATH="$PWD/src:$PWD/.gpu/site" SALBOOK_MIRROR="$PWD/.gpu/mirror" SALBOOK_GIT_COMMIT="$commit"
  export PYTHONUNBUFFERED=1 PROFILE=${PROFILE:-full}  # PROFILE=smoke tries the mechanics on any machine
  nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || echo "no nvidia-smi: not a GPU machine"
  if [[ $group == mnist-b || $group == cifar-e ]]; then  # ROAR/KAR grids: many small retrainings share the GPU
    export SALBOOK_EXECUTOR=processes SALBOOK_WORKERS=${SALBOOK_WORKERS:-8}
  fi
  for glob in ${CHAPTERS[$group]}; do
    python3 -m salbook.scripted --profile "$PROFILE" --only "$glob" --timings "$out/timings-$group.jsonl"
  done
  # paths relative to the repository (results/full/..., data/models/...), as `collect` unpacks them
  local results models
  results=$(python3 -c "import os; from salbook import config; print(os.path.relpath(config.results_dir('$PROFILE')))")
  models=$(python3 -c "import os; from salbook import config; print(os.path.relpath(config.data_dir() / 'models'))")
  tar cf "$out/$PROFILE-$group.tar" "$results" "$models"/*.json
}

collect() {
  local dir=$1
  for t in "$dir"/full-*.tar; do tar xf "$t" --wildcards 'results/full/*'; done
  cat "$dir"/timings-*.jsonl >> .gpu/timings-full.jsonl
  echo "records: $(find results/full -name '*.json' | wc -l); timings appended to .gpu/timings-full.jsonl"
}

case ${1:-} in
  prepare) prepare ;;
  run) run "${2:?group}" "${3:?commit}" ;;
  collect) collect "${2:?folder of the files a call brought back}" ;;
  *) sed -n '2,30p' "$0"; exit 2 ;;
esac
