//! `bulkhead k8s render`, `apply`, `controller`, `audit`, `reach` and `crd`.

use anyhow::Context as _;
use bulkhead_k8s::apply::ApplyOptions;
use bulkhead_k8s::audit::{Finding, Severity};
use bulkhead_k8s::reach::{ReachOptions, ReachReport, compact_ports};
use bulkhead_k8s::{K8sOptions, render, write_dir};
use bulkhead_policy::tenancy::{TenancyOptions, tenant_matrix};
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
            live,
            context,
            fail_on,
            format,
        } => {
            let manifests = manifests(file.as_deref(), live, context.as_deref())?;
            let findings = bulkhead_k8s::audit::audit(&manifests);
            match report_format(global, format) {
                AuditFormat::Table => print!("{}", table(&findings)),
                AuditFormat::Json => output::emit(Output::Json, &findings, String::new)?,
                AuditFormat::Yaml => output::emit(Output::Yaml, &findings, String::new)?,
                AuditFormat::Sarif => output::emit(Output::Json, &sarif(&findings), String::new)?,
                AuditFormat::Junit => print!("{}", junit("bulkhead k8s audit", &findings)),
            }
            Ok(exit_code(&findings, fail_on))
        }
        K8sAction::Apply {
            files,
            force_conflicts,
            no_prune,
            dry_run,
            timeout,
        } => {
            let desired = context::load(&files)?;
            let objects = render(&desired, &K8sOptions::default())
                .context("cannot render the Kubernetes objects")?;
            let options = ApplyOptions {
                force: force_conflicts,
                prune: !no_prune,
                dry_run,
                timeout: std::time::Duration::from_secs(timeout),
                ..ApplyOptions::default()
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let report = runtime.block_on(async {
                let client = bulkhead_k8s::apply::connect()
                    .await
                    .context("cannot reach a cluster (KUBECONFIG, ~/.kube/config or in-cluster)")?;
                bulkhead_k8s::apply::apply(&client, &objects, &options)
                    .await
                    .context("apply stopped; objects applied before the error stay, and running it again converges")
            })?;
            output::emit(global.output, &report, || {
                let mut text = String::new();
                let verb = if report.dry_run {
                    "would apply"
                } else {
                    "applied"
                };
                for key in &report.applied {
                    text.push_str(&format!("{verb} {key}\n"));
                }
                let verb = if report.dry_run {
                    "would prune"
                } else {
                    "pruned"
                };
                for key in &report.pruned {
                    text.push_str(&format!("{verb} {key}\n"));
                }
                text.push_str(&format!(
                    "{} applied, {} pruned{}\n",
                    report.applied.len(),
                    report.pruned.len(),
                    if report.dry_run { " (dry run)" } else { "" }
                ));
                text
            })?;
            Ok(EXIT_OK)
        }
        K8sAction::Controller {
            manifests: true,
            namespace,
            image,
            platform_configmap,
            ..
        } => {
            let mut options = bulkhead_k8s::deploy::ControllerManifestOptions {
                namespace,
                platform_config_map: platform_configmap,
                ..Default::default()
            };
            if let Some(image) = image {
                options.image = image;
            }
            let objects = bulkhead_k8s::deploy::controller_manifests(&options)
                .context("cannot render the controller's manifests")?;
            for object in &objects {
                print!("---\n{}", object.yaml);
            }
            Ok(EXIT_OK)
        }
        K8sAction::Controller {
            platform,
            force_conflicts,
            timeout,
            ..
        } => {
            let platform = match &platform {
                Some(path) => bulkhead_k8s::controller::platform_sources(path)
                    .with_context(|| format!("cannot use {} as the platform", path.display()))?,
                None => Vec::new(),
            };
            let options = ApplyOptions {
                force: force_conflicts,
                timeout: std::time::Duration::from_secs(timeout),
                ..ApplyOptions::default()
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                let client = bulkhead_k8s::apply::connect()
                    .await
                    .context("cannot reach a cluster (KUBECONFIG, ~/.kube/config or in-cluster)")?;
                eprintln!("watching Tenants (tenants.bulkhead.dev); SIGINT or SIGTERM stops");
                bulkhead_k8s::controller::run(
                    client,
                    platform,
                    K8sOptions::default(),
                    options,
                    |line| eprintln!("{line}"),
                )
                .await;
                anyhow::Ok(())
            })?;
            Ok(EXIT_OK)
        }
        K8sAction::Crd => {
            let yaml =
                bulkhead_k8s::crd::tenant_crd_yaml().context("cannot generate the Tenant CRD")?;
            print!("---\n{yaml}");
            Ok(EXIT_OK)
        }
        K8sAction::Reach {
            file,
            live,
            context,
            spec,
            ip_block_matches_pods,
            fail_on,
            format,
        } => {
            let allowed = if spec.is_empty() {
                None
            } else {
                let desired = context::load(&spec)?;
                Some(
                    tenant_matrix(&desired, &TenancyOptions::new())
                        .context("cannot evaluate the spec's network rules")?,
                )
            };
            let manifests = manifests(file.as_deref(), live, context.as_deref())?;
            let options = ReachOptions {
                ip_block_matches_pods,
                allowed,
            };
            let report = bulkhead_k8s::reach::reach(&manifests, &options)
                .context("cannot evaluate the NetworkPolicies")?;
            match report_format(global, format) {
                AuditFormat::Table => print!("{}", reach_table(&report)),
                AuditFormat::Json => output::emit(Output::Json, &report, String::new)?,
                AuditFormat::Yaml => output::emit(Output::Yaml, &report, String::new)?,
                AuditFormat::Sarif => {
                    output::emit(Output::Json, &sarif(&report.findings), String::new)?
                }
                AuditFormat::Junit => {
                    print!("{}", junit("bulkhead k8s reach", &report.findings))
                }
            }
            Ok(exit_code(&report.findings, fail_on))
        }
    }
}

/// The manifests to audit: a directory's files, or (`--live`) the cluster's objects.
fn manifests(
    file: Option<&std::path::Path>,
    live: bool,
    context: Option<&str>,
) -> anyhow::Result<Vec<bulkhead_k8s::audit::Manifest>> {
    if !live {
        if context.is_some() {
            anyhow::bail!(
                "--context names the cluster to read with --live; without --live it means nothing"
            );
        }
        let file = file.context("give -f DIR or --live")?;
        return bulkhead_k8s::audit::load_dir(file)
            .with_context(|| format!("cannot read {}", file.display()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let source = context.unwrap_or("cluster");
    runtime
        .block_on(async {
            let client = bulkhead_k8s::live::connect(context).await?;
            bulkhead_k8s::live::load(&client, source).await
        })
        .context("cannot read the cluster")
}

fn report_format(global: &Global, format: Option<AuditFormat>) -> AuditFormat {
    format.unwrap_or(match global.output {
        Output::Table => AuditFormat::Table,
        Output::Json => AuditFormat::Json,
        Output::Yaml => AuditFormat::Yaml,
    })
}

/// [`EXIT_FAILED`] when a finding is at or above `fail_on`.
fn exit_code(findings: &[Finding], fail_on: FailOn) -> u8 {
    let threshold = match fail_on {
        FailOn::Low => Some(Severity::Low),
        FailOn::Medium => Some(Severity::Medium),
        FailOn::High => Some(Severity::High),
        FailOn::Critical => Some(Severity::Critical),
        FailOn::Never => None,
    };
    let failing = threshold.is_some_and(|t| findings.iter().any(|f| f.severity >= t));
    if failing { EXIT_FAILED } else { EXIT_OK }
}

fn reach_table(report: &ReachReport) -> String {
    let mut text = format!(
        "{} workloads; ipBlocks {} pod addresses{}\n\nCONNECTIONS\n",
        report.workloads.len(),
        if report.ip_block_matches_pods {
            "match"
        } else {
            "do not match"
        },
        if report.ip_block_matches_pods {
            ""
        } else {
            " (--ip-block-matches-pods for the other convention)"
        },
    );
    if report.connections.is_empty() {
        text.push_str("none\n");
    }
    for connection in report.lines() {
        text.push_str(&format!("{connection}\n"));
    }
    text.push_str("\nNAMESPACE MATRIX\n");
    if report.namespaces.is_empty() {
        text.push_str("none\n");
    } else {
        let rows = report
            .namespaces
            .iter()
            .map(|c| vec![c.src.clone(), c.dst.clone(), compact_ports(&c.ports)])
            .collect();
        text.push_str(&output::table(&["from", "to", "ports"], rows));
    }
    text.push_str("\nFINDINGS\n");
    text.push_str(&table(&report.findings));
    text
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
fn junit(suite: &str, findings: &[Finding]) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"{1}\" tests=\"{0}\" failures=\"{0}\">\n",
        findings.len().max(1),
        xml(suite)
    );
    let class = xml(&suite.replace(' ', "."));
    if findings.is_empty() {
        out = out.replace("failures=\"1\"", "failures=\"0\"");
        out.push_str(&format!(
            "  <testcase classname=\"{class}\" name=\"no findings\"/>\n"
        ));
    }
    for f in findings {
        out.push_str(&format!(
            "  <testcase classname=\"{class}.{}\" name=\"{}\">\n    <failure type=\"{}\" message=\"{}\">{}</failure>\n  </testcase>\n",
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
