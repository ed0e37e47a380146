"""The data stages' scale curve (docs/benchmarks.md): see tasks/bench/scale.py.

    .venv/bin/python scripts/bench_scale.py --base-docs 5000 --repeats 3 --out /tmp/bench-scale
    .venv/bin/python scripts/bench_scale.py stages CORPUS WORKDIR CORES        # one measurement (internal)
    .venv/bin/python scripts/bench_scale.py dedup CLEAN_ROOT WORKDIR CORES stage|baseline   # (internal)
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.bench.scale import measure_dedup, measure_stages, scale_curve


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "stages":
        corpus, workdir, cores = sys.argv[2:5]
        print(json.dumps(measure_stages(Path(corpus), Path(workdir), int(cores))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "dedup":
        clean_root, workdir, cores, implementation = sys.argv[2:6]
        print(json.dumps(measure_dedup(clean_root, Path(workdir), int(cores), implementation)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-docs", type=int, default=5000, help="documents at 1x")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=3, help="runs per size (the median is reported)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-scale"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = scale_curve(args.out, args.base_docs, tuple(args.factors), args.repeats, args.cores)
    (args.out / "bench_scale.json").write_text(json.dumps(result, indent=2))
    for factor, row in result["sizes"].items():
        print(f"{factor:>3}x {row['documents']:>8,} docs  {row['seconds']:7.1f} s  {row['seconds_per_1k_docs']:6.2f} s/1k docs  "
              f"driver {row['driver_peak_rss_mb']:6.0f} MB  worker max {row['worker_peak_rss_mb']:6.0f} MB  "
              f"lost to dedup {row['dedup_lost_pct']:.2f} %")
    print(f"s/doc growth {result['seconds_per_doc_growth']:.2f}x, driver RSS growth {result['driver_rss_growth']:.2f}x; "
          f"dedup alone at {max(args.factors)}x: {result['dedup_alone']['stage']['seconds']:.1f} s vs baseline "
          f"{result['dedup_alone']['baseline']['seconds']:.1f} s ({result['dedup_speedup_vs_baseline']:.2f}x)")


if __name__ == "__main__":
    main()
