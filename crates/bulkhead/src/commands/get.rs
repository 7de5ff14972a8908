//! `bulkhead get` and `bulkhead describe`.

use std::path::PathBuf;

use bulkhead_spec::{Desired, Peer, PortSpec, Tenant, Workload};

use crate::cli::{Global, ObjectKind, Output};
use crate::context::{self, EXIT_OK, Failure, Outcome};
use crate::output;

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn not_found(kind: &str, name: &str, source: &str, known: Vec<String>) -> Failure {
    Failure::Other(anyhow::anyhow!(
        "no {kind} named {name:?} in {source} (expected one of: {})",
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    ))
}

fn find_tenant<'a>(desired: &'a Desired, name: &str, source: &str) -> Result<&'a Tenant, Failure> {
    desired
        .tenants
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, t)| t)
        .ok_or_else(|| {
            not_found(
                "tenant",
                name,
                source,
                desired.tenants.keys().map(ToString::to_string).collect(),
            )
        })
}

pub fn get(global: &Global, kind: ObjectKind, name: Option<&str>, files: &[PathBuf]) -> Outcome {
    let (desired, source) = context::desired_from(global, files)?;
    match (kind, name) {
        (ObjectKind::Platform, _) => {
            output::emit(structured(global.output), &desired.platform, String::new)?;
        }
        (ObjectKind::Tenants, Some(name)) => {
            let tenant = find_tenant(&desired, name, &source)?;
            output::emit(structured(global.output), tenant, String::new)?;
        }
        (ObjectKind::Tenants, None) => {
            let tenants: Vec<&Tenant> = desired.tenants.values().collect();
            output::emit(global.output, &tenants, || tenant_table(&desired))?;
        }
        (ObjectKind::Workloads, Some(name)) => {
            let (tenant, workload) = name.split_once('/').ok_or_else(|| {
                Failure::Other(anyhow::anyhow!(
                    "{name:?} does not name a workload (expected TENANT/NAME)"
                ))
            })?;
            let found = desired
                .workloads
                .iter()
                .find(|((t, w), _)| t.as_str() == tenant && w.as_str() == workload)
                .map(|(_, w)| w)
                .ok_or_else(|| {
                    not_found(
                        "workload",
                        name,
                        &source,
                        desired
                            .workloads
                            .keys()
                            .map(|(t, w)| format!("{t}/{w}"))
                            .collect(),
                    )
                })?;
            output::emit(structured(global.output), found, String::new)?;
        }
        (ObjectKind::Workloads, None) => {
            let workloads: Vec<&Workload> = desired.workloads.values().collect();
            output::emit(global.output, &workloads, || workload_table(&workloads))?;
        }
    }
    Ok(EXIT_OK)
}

/// One object prints as YAML by default: a table of one row says little.
fn structured(output: Output) -> Output {
    match output {
        Output::Table => Output::Yaml,
        other => other,
    }
}

fn tenant_table(desired: &Desired) -> String {
    let rows = desired
        .tenants
        .iter()
        .map(|(name, t)| {
            let q = &t.spec.quota;
            vec![
                name.to_string(),
                t.spec.profile.as_str().to_owned(),
                format!("{:?}", t.spec.state).to_lowercase(),
                opt(q.cpu),
                q.cpu_weight.to_string(),
                q.memory.to_string(),
                q.pids.to_string(),
                q.storage.to_string(),
                opt(q.egress),
                desired.workloads_of(name).count().to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "tenant",
            "profile",
            "state",
            "cpu",
            "weight",
            "memory",
            "pids",
            "storage",
            "egress",
            "workloads",
        ],
        rows,
    )
}

fn workload_table(workloads: &[&Workload]) -> String {
    let rows = workloads
        .iter()
        .map(|w| {
            vec![
                w.metadata.tenant.to_string(),
                w.metadata.name.to_string(),
                opt(w.spec.resources.cpu),
                w.spec.resources.memory.to_string(),
                w.spec.resources.pids.to_string(),
                format!("{:?}", w.spec.restart).to_lowercase(),
                w.spec
                    .ports
                    .iter()
                    .map(|p| match &p.name {
                        Some(name) => format!("{name}:{}/{}", p.port, p.protocol),
                        None => format!("{}/{}", p.port, p.protocol),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                w.spec.command.join(" "),
            ]
        })
        .collect();
    output::table(
        &[
            "tenant", "workload", "cpu", "memory", "pids", "restart", "ports", "command",
        ],
        rows,
    )
}

fn ports_text(ports: &[PortSpec]) -> String {
    if ports.is_empty() {
        "all ports".to_owned()
    } else {
        ports
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn peer_text(peer: &Peer) -> String {
    let selector = |s: &bulkhead_spec::LabelSelector| {
        let mut parts: Vec<String> = s
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.extend(
            s.match_expressions
                .iter()
                .map(|e| format!("{} {:?} {:?}", e.key, e.operator, e.values)),
        );
        if parts.is_empty() {
            "all".to_owned()
        } else {
            parts.join(",")
        }
    };
    match peer {
        Peer::Tenant {
            tenant,
            workload_selector,
        } => match workload_selector {
            Some(s) => format!("tenant {tenant} (workloads {})", selector(s)),
            None => format!("tenant {tenant}"),
        },
        Peer::TenantSelector {
            tenant_selector,
            workload_selector,
        } => match workload_selector {
            Some(s) => format!(
                "tenants {} (workloads {})",
                selector(tenant_selector),
                selector(s)
            ),
            None => format!("tenants {}", selector(tenant_selector)),
        },
        Peer::Cidr(block) if block.except.is_empty() => format!("cidr {}", block.cidr),
        Peer::Cidr(block) => format!(
            "cidr {} except {}",
            block.cidr,
            block
                .except
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Peer::Dns { .. } => "the platform DNS resolver".to_owned(),
        Peer::Service { service } => format!("service {service}"),
    }
}

pub fn describe(global: &Global, kind: ObjectKind, name: &str, files: &[PathBuf]) -> Outcome {
    if kind != ObjectKind::Tenants {
        return Err(Failure::Other(anyhow::anyhow!(
            "only tenants can be described (expected `bulkhead describe tenant NAME`); use `bulkhead get` for other kinds"
        )));
    }
    let (desired, source) = context::desired_from(global, files)?;
    let tenant = find_tenant(&desired, name, &source)?;
    if global.output != Output::Table {
        output::emit(global.output, tenant, String::new)?;
        return Ok(EXIT_OK);
    }
    let spec = &tenant.spec;
    let q = &spec.quota;
    let mut out = String::new();
    out.push_str(&format!(
        "Tenant:     {}   (from {source})\n",
        tenant.metadata.name
    ));
    out.push_str(&format!("Profile:    {}\n", spec.profile.as_str()));
    out.push_str(&format!(
        "State:      {}\n",
        format!("{:?}", spec.state).to_lowercase()
    ));
    out.push_str(&format!(
        "Owners:     {}\n",
        if spec.owners.is_empty() {
            "-".to_owned()
        } else {
            spec.owners.join(", ")
        }
    ));
    if !tenant.metadata.labels.is_empty() {
        let labels: Vec<String> = tenant
            .metadata
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!("Labels:     {}\n", labels.join(", ")));
    }
    out.push_str("Quota:\n");
    out.push_str(&format!(
        "  cpu {} (weight {}), memory {}, pids {}, storage {} ({}), workloads {}\n",
        q.cpu
            .map_or_else(|| "uncapped".to_owned(), |c| c.to_string()),
        q.cpu_weight,
        q.memory,
        q.pids,
        q.storage,
        if spec.storage.encrypted {
            "encrypted"
        } else {
            "NOT encrypted"
        },
        q.workloads,
    ));
    if !q.io.is_empty() {
        out.push_str(&format!(
            "  io read {} / {} iops, write {} / {} iops\n",
            opt(q.io.read_bps),
            opt(q.io.read_iops),
            opt(q.io.write_bps),
            opt(q.io.write_iops)
        ));
    }
    out.push_str(&format!(
        "  egress {}, ingress {}\n",
        opt(q.egress),
        opt(q.ingress)
    ));
    let d = &spec.defaults;
    out.push_str(&format!(
        "Defaults:   cpu {}, memory {}, pids {}, restart {}\n",
        opt(d.resources.cpu),
        d.resources.memory,
        d.resources.pids,
        serde_json::to_value(d.restart)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    ));
    out.push_str("Network (everything not listed is denied):\n");
    out.push_str(&format!(
        "  same tenant: {}\n",
        format!("{:?}", spec.network.same_tenant).to_lowercase()
    ));
    for rule in &spec.network.ingress {
        let from: Vec<String> = rule.from.iter().map(peer_text).collect();
        out.push_str(&format!(
            "  ingress from {} on {}\n",
            from.join(" | "),
            ports_text(&rule.ports)
        ));
    }
    for rule in &spec.network.egress {
        let to: Vec<String> = rule.to.iter().map(peer_text).collect();
        out.push_str(&format!(
            "  egress to {} on {}\n",
            to.join(" | "),
            ports_text(&rule.ports)
        ));
    }
    let matrix = crate::network::matrix(&desired)?;
    let me = bulkhead_policy::GroupKey::Namespace {
        name: tenant.metadata.name.to_string(),
    };
    out.push_str("Reachability (evaluated by the policy engine):\n");
    let mut any = false;
    for connection in matrix.connections() {
        if connection.src == me && connection.dst != me {
            out.push_str(&format!(
                "  reaches    {}  {}\n",
                connection.dst, connection.ports
            ));
            any = true;
        }
    }
    for connection in matrix.connections() {
        if connection.dst == me && connection.src != me {
            out.push_str(&format!(
                "  reached by {}  {}\n",
                connection.src, connection.ports
            ));
            any = true;
        }
    }
    if !any {
        out.push_str("  nothing outside the tenant\n");
    }
    for (feature, effect) in crate::commands::host::degraded(&desired) {
        out.push_str(&format!(
            "Degraded:   {effect} (this host lacks {feature:?}; accepted by spec.allowDegraded)\n"
        ));
    }
    if crate::commands::host::is_root() {
        let instance = context::instance(global, Some(&desired))?;
        out.push_str(&observed_text(&instance, tenant.metadata.name.as_str()));
        out.push_str(&last_verify_text(&instance, tenant.metadata.name.as_str()));
    }
    let workloads: Vec<&Workload> = desired.workloads_of(&tenant.metadata.name).collect();
    out.push_str(&format!("Workloads ({}):\n", workloads.len()));
    if !workloads.is_empty() {
        for line in workload_table(&workloads).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    print!("{out}");
    Ok(EXIT_OK)
}

/// What this host shows of a tenant: limits in force, usage, sandbox and volume.
fn observed_text(instance: &bulkhead_node::naming::Instance, tenant: &str) -> String {
    use bulkhead_node::host::Host;
    let mut out = String::from("Observed on this host:\n");
    let host = match Host::new(instance.clone()) {
        Ok(host) => host,
        Err(e) => return format!("{out}  cannot observe: {e}\n"),
    };
    let seen = match host.observe(tenant) {
        Ok(seen) => seen,
        Err(e) => return format!("{out}  cannot observe: {e:#}\n"),
    };
    let sandbox = bulkhead_node::sandbox::observe(instance, tenant).ok();
    out.push_str(&format!(
        "  sandbox:  {}\n",
        match (&sandbox, seen.sandbox_running) {
            (Some(s), true) => format!(
                "running (holder {:?}){}",
                s.holder,
                if seen.frozen { ", FROZEN" } else { "" }
            ),
            (_, false) if seen.sandbox_leftovers =>
                "dead, leftovers to collect (next apply)".to_owned(),
            _ => "not running".to_owned(),
        }
    ));
    match &seen.limits {
        Some(limits) => out.push_str(&format!(
            "  limits:   {}\n",
            bulkhead_node::host::summarize(limits)
        )),
        None => out.push_str("  limits:   no cgroup\n"),
    }
    if let Ok(usage) = host.cgroups().usage(&instance.tenant_cgroup(tenant)) {
        out.push_str(&format!(
            "  usage:    cpu {:.2}s (throttled {:.2}s), memory {} (oom kills {}), pids {}\n",
            usage.cpu.usage_ns as f64 / 1e9,
            usage.cpu.throttled_ns as f64 / 1e9,
            bulkhead_spec::Bytes::new(usage.memory.current.max(1)),
            usage
                .memory
                .oom_kill
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            usage.pids_current
        ));
    }
    if let Ok(pids) = host.cgroups().pids(&instance.tenant_cgroup(tenant)) {
        let names: Vec<String> = pids
            .iter()
            .take(12)
            .map(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                format!("{pid} {}", comm.trim())
            })
            .collect();
        let more = pids.len().saturating_sub(names.len());
        out.push_str(&format!(
            "  processes: {}{}\n",
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if let Ok(volume) = host.volume(tenant).observe() {
        let used = volume.image.as_ref().map(|i| i.allocated);
        out.push_str(&format!(
            "  volume:   {}{}{}\n",
            if volume.mount.is_some() {
                "mounted nosuid,nodev"
            } else {
                "not mounted"
            },
            match &volume.encryption {
                Some(e) => format!(", key {:?}", e.key).to_lowercase(),
                None => String::new(),
            },
            used.map_or_else(String::new, |u| format!(
                ", {} allocated on the host",
                bulkhead_spec::Bytes::new(u.max(1))
            ))
        ));
    }
    out
}

/// The tenant's line of the last `bulkhead verify` report, if there is one.
fn last_verify_text(instance: &bulkhead_node::naming::Instance, tenant: &str) -> String {
    let path = crate::commands::verify::last_report_path(instance);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return "Last verify: never (run `bulkhead verify`)\n".to_owned();
    };
    let Ok(report) = serde_json::from_str::<serde_json::Value>(&text) else {
        return format!("Last verify: unreadable report at {}\n", path.display());
    };
    let classes: Vec<&str> = report["classes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str())
        .collect();
    let exposure = report["exposure"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["tenant"] == tenant);
    match exposure {
        Some(e) => format!(
            "Last verify: exposure {} ({}), {} of {} denied attempts worked; classes: {}\n",
            e["score"],
            e["band"].as_str().unwrap_or("?"),
            e["leaks"],
            e["attempts"],
            classes.join(", ")
        ),
        None => "Last verify: this tenant was not in the last report\n".to_owned(),
    }
}
