"""The maintenance loop's log: a line per run that did work, none at info for a run that found nothing."""

from __future__ import annotations

import threading

from structlog.testing import capture_logs

from dockyard.services.lifecycle.maintenance import Duty, Maintenance, did_work
from dockyard.services.lifecycle.scrub import ScrubReport
from dockyard.services.scanning.scanner import ScanRun
from dockyard.wiring import Services


def test_idle_runs_log_at_debug_and_runs_with_work_at_info(svc: Services) -> None:
    idle_runs, busy_runs = [0], [0]
    enough = threading.Event()

    def idle() -> ScanRun:
        idle_runs[0] += 1
        return ScanRun()  # the scan queue was empty: nothing scanned

    def busy() -> ScanRun:
        busy_runs[0] += 1
        if idle_runs[0] >= 5 and busy_runs[0] >= 2:
            enough.set()
        return ScanRun(scanned=1, layers_read=3)

    loop = Maintenance(svc.db, [Duty("scan", 0.01, idle), Duty("gc", 0.01, busy)], tick=0.01)
    with capture_logs() as events:
        loop.start()
        assert enough.wait(60)
        loop.stop()  # joins the loop: every finished run has logged
    runs = [e for e in events if e["event"] == "maintenance"]
    info = [e for e in runs if e["log_level"] == "info"]
    assert info and all(e["duty"] == "gc" and e["result"]["scanned"] == 1 for e in info)
    assert len(info) == busy_runs[0]
    assert not any(e["duty"] == "scan" and e["log_level"] != "debug" for e in runs)


def test_did_work_reads_the_duties_reports() -> None:
    assert not did_work(None) and not did_work(0) and not did_work(ScanRun().as_dict())
    assert not did_work(ScrubReport(seconds=1.5).as_dict())  # time spent is not work done
    assert not did_work({"manifests": 0, "blobs": 0, "kept": 3, "deferred": 7})  # nothing removed
    assert did_work(ScanRun(failed=1).as_dict()) and did_work(3)
    assert did_work(ScrubReport(blobs=10, bytes=100).as_dict())
    assert did_work({"blobs": 0, "missing": ["sha256:x"]})


def test_a_failed_run_is_one_error_event_with_the_exception(svc: Services) -> None:
    failed = threading.Event()

    def broken() -> None:
        failed.set()
        raise OSError("storage unreachable")

    loop = Maintenance(svc.db, [Duty("scrub", 0.01, broken)], tick=0.01)
    with capture_logs() as events:
        loop.start()
        assert failed.wait(60)
        loop.stop()
    errors = [e for e in events if e["log_level"] == "error"]
    assert errors and all(e["event"] == "maintenance failed" and e["duty"] == "scrub" for e in errors)
    assert all(isinstance(e["exc_info"], OSError) for e in errors)
