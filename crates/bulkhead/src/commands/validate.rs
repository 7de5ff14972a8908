//! `bulkhead validate`.

use std::path::PathBuf;

use serde::Serialize;

use crate::cli::{Global, Output};
use crate::context::{EXIT_INVALID, EXIT_OK, Failure, Outcome};
use crate::output;

#[derive(Serialize)]
struct Report {
    valid: bool,
    platform: Option<String>,
    tenants: Vec<String>,
    workloads: Vec<String>,
    errors: Vec<ErrorLine>,
}

#[derive(Serialize)]
struct ErrorLine {
    file: String,
    line: u64,
    column: u64,
    path: String,
    message: String,
}

pub fn validate(global: &Global, paths: &[PathBuf]) -> Outcome {
    match bulkhead_spec::load(paths) {
        Ok(desired) => {
            let report = Report {
                valid: true,
                platform: Some(desired.platform.metadata.name.to_string()),
                tenants: desired.tenants.keys().map(ToString::to_string).collect(),
                workloads: desired
                    .workloads
                    .keys()
                    .map(|(tenant, name)| format!("{tenant}/{name}"))
                    .collect(),
                errors: Vec::new(),
            };
            output::emit(global.output, &report, || {
                format!(
                    "valid: platform {:?}, {} tenant{} ({}), {} workload{}\n",
                    desired.platform.metadata.name.as_str(),
                    report.tenants.len(),
                    plural(report.tenants.len()),
                    report.tenants.join(", "),
                    report.workloads.len(),
                    plural(report.workloads.len()),
                )
            })?;
            Ok(EXIT_OK)
        }
        Err(diagnostics) if global.output != Output::Table => {
            let report = Report {
                valid: false,
                platform: None,
                tenants: Vec::new(),
                workloads: Vec::new(),
                errors: diagnostics
                    .iter()
                    .map(|d| ErrorLine {
                        file: d.pos.file.to_string(),
                        line: d.pos.line,
                        column: d.pos.column,
                        path: d.path.clone(),
                        message: d.message.clone(),
                    })
                    .collect(),
            };
            output::emit(global.output, &report, String::new)?;
            Ok(EXIT_INVALID)
        }
        Err(diagnostics) => Err(Failure::Invalid(diagnostics)),
    }
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
