//! `bulkhead doctor`.

use bulkhead_node::doctor::{self, Feature};

use crate::cli::Global;
use crate::context::{EXIT_NOT_READY, EXIT_OK, Outcome};
use crate::output;

pub fn doctor(global: &Global, strict: bool) -> Outcome {
    let report = doctor::run_system();
    output::emit(global.output, &report, || report.to_string())?;
    if strict {
        let required: Vec<Feature> = Feature::SANDBOX
            .iter()
            .chain(Feature::CONFINEMENT)
            .copied()
            .collect();
        if let Err(not_ready) = report.require(&required) {
            eprintln!("error: {not_ready}");
            return Ok(EXIT_NOT_READY);
        }
    }
    Ok(EXIT_OK)
}
