//! `bulkhead k8s render` and `bulkhead k8s audit`.

use anyhow::Context as _;
use bulkhead_k8s::audit::{Finding, Severity};
use bulkhead_k8s::{K8sOptions, render, write_dir};
use serde_json::json;

use crate::cli::{AuditFormat, FailOn, Global, K8sAction, Output};
use crate::context::{self, EXIT_FAILED, EXIT_OK, Outcome};
use crate::output;

pub fn k8s(global: &Global, action: K8sAction) -> Outcome {
    match action {
        K8sAction::Render { files, out } => {
            let desired = context::load(&files)?;
            let objects = render(&desired, &K8sOptions::default())
                .context("cannot render the Kubernetes objects")?;
            match out {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    let written =
                        write_dir(&objects, &dir).context("cannot write the rendered objects")?;
                    for path in written {
                        println!("wrote {}", path.display());
                    }
                }
                None => {
                    for object in &objects {
                        print!("---\n{}", object.yaml);
                    }
                }
            }
            Ok(EXIT_OK)
        }
        K8sAction::Audit {
            file,
            fail_on,
            format,
        } => {
            let findings = bulkhead_k8s::audit::audit_dir(&file)
                .with_context(|| format!("cannot audit {}", file.display()))?;
            let format = format.unwrap_or(match global.output {
                Output::Table => AuditFormat::Table,
                Output::Json => AuditFormat::Json,
                Output::Yaml => AuditFormat::Yaml,
            });
            match format {
                AuditFormat::Table => print!("{}", table(&findings)),
                AuditFormat::Json => output::emit(Output::Json, &findings, String::new)?,
                AuditFormat::Yaml => output::emit(Output::Yaml, &findings, String::new)?,
                AuditFormat::Sarif => output::emit(Output::Json, &sarif(&findings), String::new)?,
                AuditFormat::Junit => print!("{}", junit(&findings)),
            }
            let threshold = match fail_on {
                FailOn::Low => Some(Severity::Low),
                FailOn::Medium => Some(Severity::Medium),
                FailOn::High => Some(Severity::High),
                FailOn::Critical => Some(Severity::Critical),
                FailOn::Never => None,
            };
            let failing = threshold.is_some_and(|t| findings.iter().any(|f| f.severity >= t));
            Ok(if failing { EXIT_FAILED } else { EXIT_OK })
        }
    }
}

fn object_text(finding: &Finding) -> String {
    let o = &finding.object;
    match &o.namespace {
        Some(ns) => format!("{}/{}/{}", o.kind, ns, o.name),
        None => format!("{}/{}", o.kind, o.name),
    }
}

fn table(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no findings\n".to_owned();
    }
    let rows = findings
        .iter()
        .map(|f| {
            vec![
                f.id.to_owned(),
                f.severity.to_string(),
                object_text(f),
                f.message.clone(),
            ]
        })
        .collect();
    let mut text = output::table(&["id", "severity", "object", "finding"], rows);
    text.push_str(&format!("{} findings\n", findings.len()));
    text
}

/// SARIF 2.1.0, for code-scanning dashboards.
fn sarif(findings: &[Finding]) -> serde_json::Value {
    let mut rules: Vec<serde_json::Value> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for f in findings {
        if seen.insert(f.id) {
            rules.push(json!({ "id": f.id, "help": { "text": f.remediation } }));
        }
    }
    let level = |s: Severity| match s {
        Severity::Low => "note",
        Severity::Medium => "warning",
        Severity::High | Severity::Critical => "error",
    };
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": { "driver": { "name": "bulkhead", "rules": rules } },
            "results": findings.iter().map(|f| json!({
                "ruleId": f.id,
                "level": level(f.severity),
                "message": { "text": format!("{}: {}", object_text(f), f.message) },
                "locations": [{ "physicalLocation": { "artifactLocation": { "uri": f.object.file } } }],
            })).collect::<Vec<_>>(),
        }]
    })
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case per finding, each a failure.
fn junit(findings: &[Finding]) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"bulkhead k8s audit\" tests=\"{0}\" failures=\"{0}\">\n",
        findings.len().max(1)
    );
    if findings.is_empty() {
        out = out.replace("failures=\"1\"", "failures=\"0\"");
        out.push_str("  <testcase classname=\"bulkhead.k8s.audit\" name=\"no findings\"/>\n");
    }
    for f in findings {
        out.push_str(&format!(
            "  <testcase classname=\"bulkhead.k8s.audit.{}\" name=\"{}\">\n    <failure type=\"{}\" message=\"{}\">{}</failure>\n  </testcase>\n",
            xml(f.id),
            xml(&object_text(f)),
            f.severity,
            xml(&f.message),
            xml(f.remediation)
        ));
    }
    out.push_str("</testsuite>\n");
    out
}
