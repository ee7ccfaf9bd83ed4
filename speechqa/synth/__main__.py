"""python -m speechqa.synth SCENARIOS.toml OUT_DIR [--seed N] [--only ID ...]"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import render_scenarios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m speechqa.synth", description=__doc__)
    p.add_argument("scenario_file", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="+", metavar="ID", help="scenario ids or call ids to render")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    paths = render_scenarios(args.scenario_file, args.out_dir, seed=args.seed, only=args.only)
    for path in paths:
        print(path)
    print(f"rendered {len(paths)} calls in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
