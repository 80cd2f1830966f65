#!/usr/bin/env python3
"""The Markdown summary of one `loadtests/run` (loadtests/README.md), and its verdict.

summary.py OUT SCENARIO DB CLASSES STUDENTS DURATION PERIOD
Reads OUT/facts, OUT/results.json (the load generator's), OUT/signin.json, OUT/samples and
OUT/metrics-{before,after}.txt; writes OUT/summary.md and prints it. Exit status 1 when a request
failed, an attempt stayed unacknowledged, the database does not hold exactly the acknowledged
attempts, or (classroom) acknowledged attempts never reached their dashboard."""

import json
import re
import sys
from pathlib import Path


# Attempts sent this close to the end of the run may be cut off before their delta arrives.
TAIL_SECS = 3.0


def facts(out):
    values = {}
    for line in (out / "facts").read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value
    return values


def counter(text, name):
    """Sum of a Prometheus family's samples (all label sets)."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)", line)
        if m:
            total += float(m.group(1))
    return total


def main():
    out = Path(sys.argv[1])
    scenario, db, classes, students, duration, period = sys.argv[2:8]
    f = facts(out)
    r = json.loads((out / "results.json").read_text())
    before = (out / "metrics-before.txt").read_text()
    after = (out / "metrics-after.txt").read_text()

    secs = max(r["duration_secs"], 1)
    total_requests = sum(q["count"] for q in r["requests"])
    db_attempts = int(f["db_attempts"])
    acked = r["acked"]
    lost = acked - db_attempts
    wall = float(f["wall_secs"])
    cpu = (int(f["cpu_ticks_after"]) - int(f["cpu_ticks_before"])) / int(f["clock_ticks"])
    items = counter(after, "nsi_writer_items_written_total") - counter(
        before, "nsi_writer_items_written_total"
    )
    commits = counter(after, "nsi_writer_commits_total") - counter(
        before, "nsi_writer_commits_total"
    )
    rss_idle = int(f["rss_idle_kib"])
    rss_peak = int(f["rss_peak_kib"])
    # two-instances: CPU, memory, /metrics and sockets are both servers' together.
    servers = " (both servers, summed)" if scenario == "two-instances" else ""

    lines = [
        f"# loadtests: {scenario} on {db}",
        "",
        f"- School: {classes} class(es) × {students} student(s); goose users: {r['users']}; "
        f"measured {r['duration_secs']} s after the ramp-up (run {duration} s"
        + (f", a submission every {period} s per student" if scenario in ("classroom", "two-instances") else "")
        + ").",
        f"- Machine: {f['cores']} cores shared by the server, the database and the generator; "
        f"load average {f['loadavg_start']} at the start, {f['loadavg_end']} at the end.",
        f"- Requests: {total_requests} ({total_requests / secs:.0f}/s), failed: "
        f"{r['failed_requests']}; goose errors: {sum(e['occurrences'] for e in r['errors'])}.",
        f"- Submissions: {r['sent']} sent, {acked} acknowledged ({r['acked_by_resend']} only on "
        f"the final resend), {r['unacked']} unacknowledged; the database holds {db_attempts}: "
        f"**lost {max(lost, 0)}**"
        + (f", **{-lost} stored but never acknowledged**" if lost < 0 else "")
        + ".",
        f"- Acknowledged during the measured window: "
        + ", ".join(
            f"{q['per_sec']:.0f}/s ({q['name']})"
            for q in r["requests"]
            if "submit" in q["name"] and "delta" not in q["name"]
        )
        + ".",
        f"- Writer: {items:.0f} attempts in {commits:.0f} commits: "
        f"**{(items / commits) if commits else 0:.1f} attempts per commit**.",
        f"- Server CPU{servers}: {cpu:.1f} s over {wall:.0f} s ({100 * cpu / max(wall, 1e-9):.0f} % of one core); "
        f"RSS idle {rss_idle / 1024:.1f} MiB, peak {rss_peak / 1024:.1f} MiB; the load generator "
        f"used {r.get('generator_cpu_secs') or 0:.1f} s of CPU.",
    ]
    signin = out / "signin.json"
    if signin.exists() and "rss_after_signins_kib" in f:
        s = json.loads(signin.read_text())
        after_signins = int(f["rss_after_signins_kib"])
        lines.append(
            f"- Memory after {s['signins']} sign-in(s): RSS {after_signins / 1024:.1f} MiB, "
            f"{(after_signins - rss_idle) / 1024:+.1f} MiB from idle ({rss_idle / 1024:.1f} MiB)."
        )
    samples = []
    if (out / "samples").exists():
        for line in (out / "samples").read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                samples.append((float(parts[0]), int(parts[1]), int(float(parts[2]))))
    if scenario in ("classroom", "two-instances") and samples:
        most = max(s[2] for s in samples)
        full = [s for s in samples if s[2] == most]
        if most:
            rss = full[-1][1]
            lines.append(
                f"- Memory with {most} sockets open{servers}: RSS {rss / 1024:.1f} MiB, "
                f"**{(rss - rss_idle) / most:.1f} KiB per connected user** "
                f"(from {rss_idle / 1024:.1f} MiB idle)."
            )
    # Deltas not seen: the ones sent in the run's last seconds were on their way when goose
    # stopped the dashboards (it ends a user inside its transaction); the others never arrived.
    ages = r.get("undelivered_ages_secs", [])
    cut_off = sum(1 for a in ages if a <= TAIL_SECS)
    missing = max(acked - r.get("dashboard_deltas", 0) - cut_off, 0)
    if scenario in ("classroom", "two-instances"):
        lines.append(
            f"- Dashboards: {r['dashboard_deltas']} attempt deltas seen for {acked} acknowledged "
            f"attempts: {cut_off} sent in the last {TAIL_SECS:.0f} s (cut off by the end of the "
            f"run), **{missing} missing**"
            + (f" (the oldest sent {max(ages):.0f} s before the end)" if missing else "")
            + f"; lagged snapshots {r['dashboard_lagged']}; sockets reopened "
            f"{r['reconnects']}."
        )
    lines += [
        "",
        "| request | count | /s | failed | P50 ms | P95 ms | P99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for q in r["requests"]:
        lines.append(
            f"| {q['name']} | {q['count']} | {q['per_sec']:.1f} | {q['fails']} | "
            f"{q['p50_ms']:.1f} | {q['p95_ms']:.1f} | {q['p99_ms']:.1f} | {q['max_ms']:.1f} |"
        )
    if r["errors"]:
        lines += ["", "Errors:", ""]
        for e in r["errors"]:
            lines.append(f"- {e['occurrences']} × {e['name']}: {e['error']}")
    lines += ["", f"goose's report: {out / 'report.html'}", ""]
    text = "\n".join(lines)
    (out / "summary.md").write_text(text)
    print(text)

    failures = []
    if r["failed_requests"] or r["errors"]:
        failures.append(f"{r['failed_requests']} failed request(s)")
    if r["unacked"]:
        failures.append(f"{r['unacked']} unacknowledged attempt(s)")
    if lost != 0:
        failures.append(f"database holds {db_attempts} attempts, {acked} were acknowledged")
    if scenario in ("classroom", "two-instances"):
        # A `lagged` snapshot (documented backpressure) replaces the deltas it skips: allow a few.
        if missing > max(10, acked // 100):
            failures.append(f"{missing} acknowledged attempt(s) never reached their dashboard")
    if r["sent"] == 0 and scenario != "catalogue":
        failures.append("no submission was sent")
    if failures:
        print("loadtests: FAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
