# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Print the benchmark's figures as they come, then one table with ratios ours/OCA.

``results[label][measurement]`` holds what ``bench.py`` measured (dicts of
plain numbers); this module only formats them and checks our targets.
"""

import sys

OURS, THEIRS = "ours", "oca"


def say(text):
    print(text, flush=True)


def _ms(seconds):
    return None if seconds is None else 1000 * seconds


def print_figure(label, name, data):
    """One line for the measurement ``name`` of ``label``, just measured."""
    if name == "enqueue":
        say(
            f"[{label}] enqueue: {data['jobs']} jobs in {data['seconds']:.2f} s "
            f"= {data['rate']:.0f} jobs/s"
        )
    elif name == "drain":
        if "rate_busy" in data:
            say(
                f"[{label}] drain: {data['done']}/{data['jobs']} jobs done "
                f"{data['from_launch']:.2f} s after the server launch = "
                f"{data['rate_from_launch']:.0f} jobs/s; first job started after "
                f"{data['first_start_after']:.2f} s; first start to last done "
                f"{data['busy']:.2f} s = {data['rate_busy']:.0f} jobs/s"
                + (
                    f"; CPU per job {_ms(data['odoo_cpu']):.1f} ms in Odoo + "
                    f"{_ms(data['postgresql_cpu']):.1f} ms in PostgreSQL"
                    if data.get("cpu_per_job")
                    else ""
                )
            )
        else:
            say(f"[{label}] drain: no job done")
    elif name == "pickup":
        if data.get("started"):
            say(
                f"[{label}] pickup latency (commit to start), {data['started']}/"
                f"{data['jobs']} jobs: median {_ms(data['median']):.1f} ms, "
                f"p95 {_ms(data['p95']):.1f} ms, max {_ms(data['max']):.1f} ms"
            )
        else:
            say(f"[{label}] pickup latency: no job started")
    elif name.startswith("fanin"):
        line = (
            f"[{label}] fan-in {data['members']}: graph stored in "
            f"{data['create_seconds']:.2f} s = {data['create_rate']:.0f} jobs/s; "
        )
        if data["finished"]:
            pending = data.get("pending_after_last")
            line += (
                f"callback done; members drained at {data['rate_busy']:.0f} jobs/s; callback "
                + ("never waited" if pending is None else f"pending {_ms(pending):.1f} ms")
                + f" and started {_ms(data['started_after_last']):.1f} ms after the last "
                "member's done"
            )
        else:
            line += (
                f"callback NOT done within {data['timeout']} s "
                f"({data['members_done']}/{data['members']} members done)"
            )
        say(line)
    elif name.startswith("release"):
        if "skipped" in data:
            say(f"[{label}] release cost: skipped ({data['skipped']})")
        else:
            say(
                f"[{label}] release cost, group of {data['members']}: "
                f"{data['member_release_ms']:.3f} ms per member, "
                f"{data['plain_release_ms']:.3f} ms per plain job; callback "
                f"{data['callback_state']} after the last release"
            )


def _get(results, label, name, key):
    value = results.get(label, {}).get(name) or {}
    return value.get(key)


def _fmt(value, unit):
    if value is None:
        return "-"
    if unit == "jobs/s":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"
    return f"{value:,.2f}"


def _check(value, target):
    """Whether ``value`` meets ``target``; None (nothing to say) when it was not measured."""
    return None if value is None else target(value)


def _rows(results, sizes):
    """(figure, unit, ours, theirs, target text, target met or None) for each line."""

    def pair(name, key, scale=1):
        values = [_get(results, label, name, key) for label in (OURS, THEIRS)]
        return [None if v is None else v * scale for v in values]

    rows = []
    ours, theirs = pair("enqueue", "rate")
    rows.append(
        (
            f"Enqueue {sizes['enqueue_jobs']:,} with_delay() in 1 transaction",
            "jobs/s",
            ours,
            theirs,
            ">= 2,000",
            _check(ours, lambda v: v >= 2000),
        )
    )
    for key, what in (
        ("rate_from_launch", "server launch -> last done"),
        ("rate_busy", "first start -> last done"),
    ):
        ours, theirs = pair("drain", key)
        # Judged on the ratio as printed (two decimals), so the table never contradicts itself.
        met = None if None in (ours, theirs) else round(ours / theirs, 2) >= 2
        rows.append(
            (
                f"Drain {sizes['drain_jobs']:,} at root:4, {what}",
                "jobs/s",
                ours,
                theirs,
                ">= 2x OCA",
                met,
            )
        )
    for key, what in (
        ("cpu_per_job", "Odoo + PostgreSQL"),
        ("odoo_cpu", "Odoo processes"),
        ("postgresql_cpu", "PostgreSQL backends"),
    ):
        ours, theirs = pair("drain", key, 1000)
        rows.append((f"Drain: CPU per job, {what}", "ms", ours, theirs, "", None))
    ours, theirs = pair("drain", "first_start_after")
    rows.append(("Drain: server launch -> first job started", "s", ours, theirs, "", None))
    ours, theirs = pair("pickup", "median", 1000)
    rows.append(
        (
            "Pickup latency, median (commit -> start)",
            "ms",
            ours,
            theirs,
            "<= 50 ms",
            _check(ours, lambda v: v <= 50),
        )
    )
    ours, theirs = pair("pickup", "p95", 1000)
    rows.append(("Pickup latency, p95", "ms", ours, theirs, "", None))
    for members in sizes["fanin_members"]:
        name = f"fanin{members}"
        ours, theirs = pair(name, "create_rate")
        target = members == max(sizes["fanin_members"])
        rows.append(
            (
                f"Fan-in {members:,}: store group + on_done",
                "jobs/s",
                ours,
                theirs,
                ">= 2,000" if target else "",
                _check(ours, lambda v: v >= 2000) if target else None,
            )
        )
        ours, theirs = pair(name, "rate_busy")
        rows.append((f"Fan-in {members:,}: members drained", "jobs/s", ours, theirs, "", None))
        ours, theirs = pair(name, "pending_after_last", 1000)
        rows.append(
            (
                f"Fan-in {members:,}: callback pending after last done",
                "ms",
                ours,
                theirs,
                "<= 100 ms",
                _check(ours, lambda v: v <= 100),
            )
        )
        ours, theirs = pair(name, "started_after_last", 1000)
        rows.append(
            (f"Fan-in {members:,}: callback started after last done", "ms", ours, theirs, "", None)
        )
    per_member = {}
    for members in sizes["fanin_members"]:
        ours, theirs = pair(f"release{members}", "member_release_ms")
        per_member[members] = ours
        rows.append(
            (f"Release per member, group of {members:,} (direct)", "ms", ours, theirs, "", None)
        )
        ours, theirs = pair(f"release{members}", "plain_release_ms")
        rows.append(("  same transaction, job without dependent", "ms", ours, theirs, "", None))
    small, large = (per_member.get(m) for m in sorted(sizes["fanin_members"]))
    if small and large:
        growth = large / small
        rows.append(
            (
                f"Release per member, {max(per_member):,} / {min(per_member):,}",
                "x",
                growth,
                None,
                "within 20%",
                0.8 <= growth <= 1.2,
            )
        )
    return rows


def print_table(results, sizes, elapsed, out=sys.stdout):
    rows = _rows(results, sizes)
    header = ("Figure", "Unit", "Ours", "OCA", "Ours/OCA", "Target (ours)", "Met")
    lines = []
    for figure, unit, ours, theirs, target, met in rows:
        if ours is None and theirs is None:
            continue  # not measured in this run (--only)
        ratio = f"{ours / theirs:.2f}x" if ours is not None and theirs else "-"
        lines.append(
            (
                figure,
                unit,
                _fmt(ours, unit),
                _fmt(theirs, unit),
                ratio,
                target,
                "" if met is None else ("yes" if met else "NO"),
            )
        )
    widths = [max(len(str(row[i])) for row in (header, *lines)) for i in range(len(header))]
    print(file=out)
    for row in (header, tuple("-" * width for width in widths), *lines):
        print(
            " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)),
            file=out,
        )
    rounds = {label: results[label].get("drain", {}).get("rounds") for label in results}
    loads = {label: results[label].get("load") for label in results}
    print(file=out)
    if any(rounds.values()):
        print(
            f"Drain figures: median of {rounds} rounds; pickup latencies: all the rounds' "
            "jobs together.",
            file=out,
        )
    print(f"One-minute load average when each measurement started: {loads}", file=out)
    print(
        f"Ratios are ours/OCA: above 1 is better for jobs/s, below 1 for s and ms. "
        f"Whole run: {elapsed:.0f} s.",
        file=out,
    )
