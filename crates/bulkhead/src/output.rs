//! Printing: a table for people, JSON or YAML for scripts.

use anyhow::Context as _;
use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use crate::cli::Output;
use crate::context::Failure;

/// Prints `value` as JSON or YAML, or calls `human` for the table form.
pub fn emit<T: Serialize>(
    output: Output,
    value: &T,
    human: impl FnOnce() -> String,
) -> Result<(), Failure> {
    let text = match output {
        Output::Json => {
            let mut text = serde_json::to_string_pretty(value).context("cannot render JSON")?;
            text.push('\n');
            text
        }
        Output::Yaml => serde_saphyr::to_string(value).context("cannot render YAML")?,
        Output::Table => human(),
    };
    print!("{text}");
    Ok(())
}

/// An aligned, borderless table with a header row.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| h.to_uppercase()));
    for row in rows {
        table.add_row(row);
    }
    let mut text = table
        .to_string()
        .lines()
        .map(|line| line.trim_end().trim_start_matches(' ').to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    text
}
