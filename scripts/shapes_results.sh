#!/usr/bin/env bash
# Recompute every published result that depends on the shipped `shapes` model, in the order the docs cite them.
# Run it after retraining the model (python -m captum_clip.shipped.training --out DIR, then copy
# DIR/shapes.json and DIR/shapes.safetensors into captum_clip/assets/). Needs the package installed (.venv).
# On the project's 2-core CPU machine it takes about 20 minutes; pass step names to run only some of them:
#   bash scripts/shapes_results.sh accuracy demo localisation concepts faithfulness mutual bench_mutual convis bench_convis
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PWD/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(accuracy demo localisation concepts faithfulness mutual bench_mutual convis bench_convis)

for step in "${steps[@]}"; do
  echo "== $step"
  case "$step" in
    accuracy)  # captum_clip/assets/SHAPES_MODEL.md
      python -m captum_clip.shipped.zero_shot --n 1000 ;;
    demo)  # README.md
      captum-clip demo --out docs/figures/demo_scene7.png ;;
    localisation)  # docs/benchmark.md
      captum-clip benchmark --dataset shapes --n 200 \
        --methods surgery,surgery:redundancy=empty,clip,gradcam,ig,convis,mutual,random \
        --metrics PointingGame,PointingGameTolerant,AttributionLocalisation,RelevanceMassAccuracy,RelevanceRankAccuracy,TopKIntersection,AUC \
        --out-dir docs/benchmark_shapes/localisation ;;
    concepts)  # docs/benchmark.md, docs/mutual.md
      captum-clip benchmark --dataset shapes --n 200 --methods mutual \
        --metrics ConceptDeletion,ConceptInsertion,AccDrop,AccInc --out-dir docs/benchmark_shapes/concepts ;;
    faithfulness)  # docs/benchmark.md
      captum-clip benchmark --dataset shapes --n 50 --methods surgery,clip,gradcam,ig,mutual,random \
        --metrics PixelFlipping,RegionPerturbation,FaithfulnessCorrelation,IROF,ROAD,MPRT --mprt-samples 16 \
        --out-dir docs/benchmark_shapes/faithfulness ;;
    mutual)  # docs/mutual.md
      python -m captum_clip.shipped.mutual_example --seed 3888 --out docs/figures/mutual_shapes_scene.png --survey ;;
    bench_mutual)  # benchmarks/results_mutual.md, docs/mutual.md, docs/benchmarks.md
      python benchmarks/bench_mutual.py --devices cpu --repeats 21 --threads 1,2 --metrics 36 --out benchmarks/results_mutual.md ;;
    convis)  # docs/convis.md (the default noise padding, then the gray padding)
      OMP_NUM_THREADS=1 captum-clip convis-wsol --scenes 100 --figure docs/figures/convis_scenes.png
      OMP_NUM_THREADS=1 captum-clip convis-wsol --scenes 100 --pad-fill gray
      OMP_NUM_THREADS=1 captum-clip convis-ood ;;
    bench_convis)  # benchmarks/results_convis.md, docs/convis.md (speeds depend on the model's size, not its weights)
      python benchmarks/bench_convis.py --out benchmarks/results_convis.md ;;
    *)
      echo "unknown step $step" >&2; exit 2 ;;
  esac
done
