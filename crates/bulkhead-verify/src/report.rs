//! The verifier's report: rows, a summary per class × tenant pair,
//! violations and an exposure score per tenant.
//!
//! # Exposure score
//!
//! In the spirit of `systemd-analyze security`: 0.0 means nothing the
//! probes tried from inside the tenant worked, 10.0 means everything did.
//! It is computed from what the probes **observed**, never from
//! configuration. For tenant `T`, over every judged row whose actor is `T`
//! and whose expectation is "denied" (rows expected to work are about
//! outages, not exposure):
//!
//! ```text
//! exposure(T) = 10 × Σ weight(leaking rows) / Σ weight(all such rows)
//! weight = 3  the attempt aimed at another tenant
//!          2  it aimed at the host (files, devices, kernel) or a quota
//!          1  it stays inside T (its own hardening: seccomp, capabilities, mounts)
//! ```
//!
//! Bands: `0` isolated, `< 2` ok, `< 5` medium, `< 8` exposed, else unsafe.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::class::{Expected, ProbeClass, Target, Verdict};

/// One attempt, judged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// Its class.
    pub class: ProbeClass,
    /// The tenant the attempt was made from.
    pub tenant: String,
    /// At whom it was aimed.
    pub target: Target,
    /// Stable id (`processes.kill.holder`).
    pub id: String,
    /// What was tried.
    pub attempt: String,
    /// What the model says.
    pub expected: Expected,
    /// What happened.
    pub observed: String,
    /// The judgement.
    pub verdict: Verdict,
}

impl Row {
    fn weight(&self) -> u32 {
        match (&self.target, self.class) {
            (Target::Tenant(_), _) => 3,
            (_, ProbeClass::Resources) | (Target::Host, _) => 2,
            (Target::Own, _) => 1,
        }
    }
}

/// Counts for one class and one (tenant, target) pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The class.
    pub class: Option<ProbeClass>,
    /// The acting tenant.
    pub tenant: String,
    /// The target.
    pub target: Option<Target>,
    /// Rows that passed.
    pub pass: usize,
    /// Leaks.
    pub leak: usize,
    /// Outages.
    pub outage: usize,
    /// Not judged.
    pub skipped: usize,
    /// Dropped as the firewall's plan narrows them.
    pub narrowed: usize,
}

/// A tenant's exposure (see the module docs for the formula).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Exposure {
    /// The tenant.
    pub tenant: String,
    /// 0.0 (nothing worked) to 10.0 (everything did).
    pub score: f64,
    /// `isolated`, `ok`, `medium`, `exposed` or `unsafe`.
    pub band: &'static str,
    /// Leaking rows.
    pub leaks: usize,
    /// Judged "denied" rows.
    pub attempts: usize,
}

/// A phase of the run and how long it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// The phase.
    pub phase: String,
    /// Milliseconds.
    pub millis: u128,
}

/// Everything `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// The tenants probed.
    pub tenants: Vec<String>,
    /// The classes probed.
    pub classes: Vec<ProbeClass>,
    /// Every judged attempt.
    pub rows: Vec<Row>,
    /// Per class × (tenant, target).
    pub summary: Vec<Summary>,
    /// Exposure per tenant.
    pub exposure: Vec<Exposure>,
    /// What was not probed and why, measurements (CPU ratios).
    pub notes: Vec<String>,
    /// Wall time per phase.
    pub timings: Vec<Timing>,
}

impl Report {
    /// Rows where something denied worked.
    pub fn leaks(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.verdict == Verdict::Leak)
    }

    /// Rows where something allowed failed.
    pub fn outages(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.verdict == Verdict::Outage)
    }

    /// Flows dropped as the firewall's plan narrows them.
    pub fn narrowed(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.verdict == Verdict::Narrowed)
    }

    /// Leaks and outages.
    pub fn violations(&self) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Leak | Verdict::Outage))
    }

    /// Whether no row leaked or failed.
    pub fn is_clean(&self) -> bool {
        self.violations().next().is_none()
    }

    /// The exposure of `tenant`, if probed.
    pub fn exposure_of(&self, tenant: &str) -> Option<&Exposure> {
        self.exposure.iter().find(|e| e.tenant == tenant)
    }

    pub(crate) fn timed(&mut self, phase: &str, took: Duration) {
        self.timings.push(Timing {
            phase: phase.to_owned(),
            millis: took.as_millis(),
        });
    }

    /// Fills `summary` and `exposure` from `rows`.
    pub(crate) fn finish(&mut self) {
        let mut summary: BTreeMap<(ProbeClass, String, Target), Summary> = BTreeMap::new();
        for row in &self.rows {
            let entry = summary
                .entry((row.class, row.tenant.clone(), row.target.clone()))
                .or_insert_with(|| Summary {
                    class: Some(row.class),
                    tenant: row.tenant.clone(),
                    target: Some(row.target.clone()),
                    ..Summary::default()
                });
            match row.verdict {
                Verdict::Pass => entry.pass += 1,
                Verdict::Leak => entry.leak += 1,
                Verdict::Outage => entry.outage += 1,
                Verdict::Skipped => entry.skipped += 1,
                Verdict::Narrowed => entry.narrowed += 1,
            }
        }
        self.summary = summary.into_values().collect();
        self.exposure = self
            .tenants
            .iter()
            .map(|tenant| exposure(tenant, &self.rows))
            .collect();
    }
}

fn exposure(tenant: &str, rows: &[Row]) -> Exposure {
    let judged = rows.iter().filter(|r| {
        r.tenant == tenant
            && r.expected == Expected::Denied
            && matches!(r.verdict, Verdict::Pass | Verdict::Leak)
    });
    let (mut total, mut leaked, mut attempts, mut leaks) = (0u32, 0u32, 0usize, 0usize);
    for row in judged {
        total += row.weight();
        attempts += 1;
        if row.verdict == Verdict::Leak {
            leaked += row.weight();
            leaks += 1;
        }
    }
    let score = if total == 0 {
        0.0
    } else {
        (100.0 * f64::from(leaked) / f64::from(total)).round() / 10.0
    };
    let band = match score {
        0.0 => "isolated",
        s if s < 2.0 => "ok",
        s if s < 5.0 => "medium",
        s if s < 8.0 => "exposed",
        _ => "unsafe",
    };
    Exposure {
        tenant: tenant.to_owned(),
        score,
        band,
        leaks,
        attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: Target, verdict: Verdict) -> Row {
        Row {
            class: ProbeClass::Processes,
            tenant: "a".into(),
            target,
            id: "x".into(),
            attempt: "x".into(),
            expected: Expected::Denied,
            observed: String::new(),
            verdict,
        }
    }

    #[test]
    fn exposure_weighs_cross_tenant_leaks_highest() {
        let rows = vec![
            row(Target::Tenant("b".into()), Verdict::Leak),
            row(Target::Host, Verdict::Pass),
            row(Target::Own, Verdict::Pass),
            row(Target::Own, Verdict::Skipped),
        ];
        let e = exposure("a", &rows);
        assert_eq!(
            (e.score, e.band, e.leaks, e.attempts),
            (5.0, "exposed", 1, 3)
        );
        let clean = exposure("a", &rows[1..]);
        assert_eq!((clean.score, clean.band), (0.0, "isolated"));
    }
}
