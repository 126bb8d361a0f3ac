"""One table from several `nas proxy-check` runs of the same architectures (issue 29):
each evaluator setting's tau against the same references, beside their ceiling.

    python benchmarks/proxy_table.py benchmarks/results/proxy_ceiling benchmarks/results/supernet_ranking/*

Each argument is a proxy check's run directory (its proxy_check.json); the row is
named after the run (`name` in its config.yaml). Checks that copied their references
from one another (`proxy_check.references`) share the ceiling, printed once per
distinct value.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nas.rundir import RunDir
from nas.stages.proxycheck import tau_text
from search_spaces.infra.strict import read_yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checks", nargs="+", type=Path, help="proxy check run directories")
    args = ap.parse_args()
    print(f"{'check':<28} {'evaluator':<10} {'archs':>5} {'Kendall tau [95% CI]':>22} "
          f"{'in band':>22} {'of ceiling':>10} {'s/child':>8}")
    ceilings: set[str] = set()
    for folder in args.checks:
        run = RunDir.open(folder)
        summary = json.loads(run.proxy_check_json.read_text())
        name = (read_yaml(run.config_path) or {}).get("name", run.root.name)
        ceiling = summary.get("ceiling")
        if ceiling is not None:
            text = f"{tau_text(ceiling)}|{tau_text(ceiling.get('band'))}"
            if text not in ceilings:
                ceilings.add(text)
                print(f"{name:<28} {'ceiling':<10} {ceiling['archs']:>5} "
                      f"{tau_text(ceiling):>22} {tau_text(ceiling.get('band')):>22} "
                      f"{'':>10} {summary.get('long_s_per_child', float('nan')):>8.1f}")
        for evaluator, e in summary["evaluators"].items():
            share = f"{e['of_ceiling']:.2f}" if "of_ceiling" in e else "-"
            print(f"{name:<28} {evaluator:<10} {e['archs']:>5} {tau_text(e):>22} "
                  f"{tau_text(e.get('band')):>22} {share:>10} {e['s_per_child']:>8.1f}")


if __name__ == "__main__":
    main()
