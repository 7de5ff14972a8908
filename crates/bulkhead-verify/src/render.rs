//! Renderers of a [`Report`]: a plain table for people, JSON for scripts,
//! JUnit XML for CI systems (one test suite per class, one test case per
//! row; leaks and outages are failures, unjudged rows are skipped).

use std::fmt::Write as _;

use crate::class::{ProbeClass, Verdict};
use crate::report::Report;

/// A fixed-width table of every row (or only violations), then the
/// summary of violations and the exposure per tenant.
pub fn table(report: &Report, only_violations: bool) -> String {
    let header = [
        "CLASS", "TENANT", "TARGET", "ATTEMPT", "EXPECTED", "OBSERVED", "VERDICT",
    ];
    let mut lines: Vec<[String; 7]> = vec![header.map(str::to_owned)];
    for row in &report.rows {
        if only_violations
            && !matches!(
                row.verdict,
                Verdict::Leak | Verdict::Outage | Verdict::Narrowed
            )
        {
            continue;
        }
        lines.push([
            row.class.to_string(),
            row.tenant.clone(),
            row.target.to_string(),
            row.attempt.clone(),
            format!("{:?}", row.expected).to_lowercase(),
            clip(&row.observed, 40),
            row.verdict.to_string().to_uppercase(),
        ]);
    }
    let mut widths = [0usize; 7];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
            if i + 1 == line.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    let leaks = report.leaks().count();
    let outages = report.outages().count();
    let narrowed = report.narrowed().count();
    let _ = writeln!(
        out,
        "\n{} attempts: {} passed, {leaks} leaks, {outages} outages, {narrowed} narrowed, {} not judged",
        report.rows.len(),
        report
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Pass)
            .count(),
        report
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Skipped)
            .count(),
    );
    let _ = writeln!(out, "\nEXPOSURE (0 = nothing worked, 10 = everything did)");
    for e in &report.exposure {
        let _ = writeln!(
            out,
            "  {:<20} {:>4.1}  {:<8}  {} of {} denied attempts worked",
            e.tenant, e.score, e.band, e.leaks, e.attempts
        );
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

/// The report as JSON.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The report as JUnit XML: `<testsuites>` with a `<testsuite>` per class.
pub fn junit(report: &Report) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let failures = report.violations().count();
    let total_ms: u128 = report.timings.iter().map(|t| t.millis).sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"bulkhead verify\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">",
        report.rows.len(),
        total_ms as f64 / 1000.0
    );
    for class in ProbeClass::ALL {
        let rows: Vec<_> = report.rows.iter().filter(|r| r.class == class).collect();
        if rows.is_empty() {
            continue;
        }
        let failed = rows
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Leak | Verdict::Outage))
            .count();
        let skipped = rows
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Skipped | Verdict::Narrowed))
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{class}\" tests=\"{}\" failures=\"{failed}\" skipped=\"{skipped}\">",
            rows.len()
        );
        for row in rows {
            let _ = write!(
                out,
                "    <testcase classname=\"bulkhead.verify.{class}.{}\" name=\"{} [{}]\"",
                xml(&row.tenant),
                xml(&row.attempt),
                xml(&row.target.to_string())
            );
            match row.verdict {
                Verdict::Pass => out.push_str("/>\n"),
                Verdict::Skipped => {
                    let _ = writeln!(
                        out,
                        "><skipped message=\"{}\"/></testcase>",
                        xml(&row.observed)
                    );
                }
                Verdict::Narrowed => {
                    let _ = writeln!(
                        out,
                        "><skipped message=\"narrowed by the firewall as planned: {}\"/></testcase>",
                        xml(&row.observed)
                    );
                }
                Verdict::Leak | Verdict::Outage => {
                    let _ = writeln!(
                        out,
                        "><failure type=\"{}\" message=\"{}: expected {:?}, observed {}\"/></testcase>",
                        row.verdict,
                        row.verdict,
                        row.expected,
                        xml(&row.observed)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::{Expected, Target};
    use crate::report::Row;

    fn sample() -> Report {
        let mut report = Report {
            tenants: vec!["a".into(), "b".into()],
            classes: vec![ProbeClass::Processes],
            rows: vec![
                Row {
                    class: ProbeClass::Processes,
                    tenant: "a".into(),
                    target: Target::Tenant("b".into()),
                    id: "processes.kill.holder".into(),
                    attempt: "kill(pid, 0) <b>".into(),
                    expected: Expected::Denied,
                    observed: "ESRCH".into(),
                    verdict: Verdict::Pass,
                },
                Row {
                    class: ProbeClass::Processes,
                    tenant: "b".into(),
                    target: Target::Tenant("a".into()),
                    id: "processes.kill.holder".into(),
                    attempt: "kill(pid, 0) & co".into(),
                    expected: Expected::Denied,
                    observed: "signal 0 delivered".into(),
                    verdict: Verdict::Leak,
                },
            ],
            ..Report::default()
        };
        report.finish();
        report
    }

    #[test]
    fn junit_has_one_failure_per_violation_and_escapes() {
        let xml = junit(&sample());
        assert!(xml.contains("<testsuites name=\"bulkhead verify\" tests=\"2\" failures=\"1\""));
        assert!(xml.contains("kill(pid, 0) &lt;b&gt;"));
        assert!(xml.contains("kill(pid, 0) &amp; co"));
        assert_eq!(xml.matches("<failure type=\"leak\"").count(), 1);
    }

    #[test]
    fn table_lists_rows_and_exposure() {
        let text = table(&sample(), false);
        assert!(text.lines().next().is_some_and(|l| l.starts_with("CLASS")));
        assert!(text.contains("LEAK"));
        assert!(text.contains("1 leaks, 0 outages"));
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with('b') && l.contains("10.0  unsafe"))
        );
    }

    #[test]
    fn narrowed_rows_are_shown_counted_and_skipped_in_junit_not_failed() {
        let mut report = sample();
        report.rows.push(Row {
            class: ProbeClass::Network,
            tenant: "a".into(),
            target: Target::Tenant("b".into()),
            id: "network.tcp.5432".into(),
            attempt: "reach b at 10.0.0.3:5432/tcp".into(),
            expected: Expected::Narrowed,
            observed: "no answer in 1000 ms".into(),
            verdict: Verdict::Narrowed,
        });
        report.finish();
        let text = table(&report, true);
        assert!(text.contains("NARROWED"), "{text}");
        assert!(text.contains("1 leaks, 0 outages, 1 narrowed"), "{text}");
        let xml = junit(&report);
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(
            xml.contains("<skipped message=\"narrowed by the firewall as planned"),
            "{xml}"
        );
        assert!(!report.is_clean() && report.narrowed().count() == 1);
        // Narrowed rows do not count towards exposure (they are not denied).
        assert_eq!(report.exposure_of("a").map(|e| e.attempts), Some(1));
    }

    #[test]
    fn json_round_trips_as_a_value() {
        let value: serde_json::Value = serde_json::from_str(&json(&sample())).expect("json");
        assert_eq!(value["rows"][1]["verdict"], "leak");
        assert_eq!(value["exposure"][0]["band"], "isolated");
    }
}
