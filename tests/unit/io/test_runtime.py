"""A workflow job's log ends with its CPU seconds, which bench/demo.py sums per stage."""

import re
import resource
import subprocess
import sys


def test_a_job_logs_its_cpu_seconds_at_exit(tmp_path):
    log = tmp_path / "job.log"
    code = (
        "from xaimed.io.runtime import setup_logging\n"
        f"setup_logging({str(log)!r})\n"
        "sum(i * i for i in range(4_000_000))\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    logged = re.findall(r"job resources: ([0-9.]+) CPU seconds, peak RSS (\d+) MB", log.read_text())
    assert len(logged) == 1
    seconds, rss = float(logged[0][0]), int(logged[0][1])
    # all of the process but its teardown after the log line
    assert 0.8 * used <= seconds <= used + 0.01
    assert rss > 10


def test_a_job_freezes_its_imports_out_of_the_collector(tmp_path):
    # torch's imports leave some 10^5 objects that the exit would otherwise traverse; only a
    # workflow job (a log file) freezes them, not an interactive session
    code = (
        "import gc, sys, torch\n"
        "from xaimed.io.runtime import setup_logging\n"
        "setup_logging(sys.argv[1] or None)\n"
        "print(gc.get_freeze_count())\n"
    )
    frozen = {
        kind: int(
            subprocess.run(
                [sys.executable, "-c", code, arg], check=True, capture_output=True, text=True
            ).stdout
        )
        for kind, arg in (("job", str(tmp_path / "job.log")), ("session", ""))
    }
    assert frozen["job"] > 50_000
    assert frozen["session"] == 0
