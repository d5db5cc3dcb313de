"""The process of one isolated case (`mpdit bench --isolate`, mpdit.bench.executor.Isolated): it
rebuilds the plan, reads the setup case's ceilings back from bench.jsonl, says on stdout that its
case begins, runs it under the case timeout and appends its line (rows, error) to bench.jsonl."""
import json
import os
import sys

from mpdit.bench.executor import STARTED, Ceilings, InProcess
from mpdit.bench.plan import BenchRequest
from mpdit.bench.results import Results


def main(argv) -> int:
    request = json.loads(argv[0])
    plan = BenchRequest(**request["plan"]).plan()
    results = Results.resumed(plan.device, os.path.join(plan.out, "bench.jsonl"))
    case = next(case for case in plan.cases() if list(case.key) == request["case"])
    ceilings = None if case.section == "setup" else Ceilings.from_rows(plan, results)
    print(STARTED, flush=True)  # the parent's clock for the case timeout starts now
    InProcess(plan, request["timeout"]).run(case, results, ceilings)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
