//! A plain aligned-text rendering of a [`Report`], for logs and tests. The CLI
//! renders its own tables from the same public fields.

use std::fmt;

use super::Report;

fn table(f: &mut fmt::Formatter<'_>, rows: &[Vec<String>]) -> fmt::Result {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        writeln!(f, "{}", line.trim_end())?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kernel {}, cgroups {}",
            self.kernel_release.as_deref().unwrap_or("unknown"),
            self.cgroup.mode.as_str()
        )?;
        writeln!(f)?;
        let mut rows = vec![vec![
            "FEATURE".to_owned(),
            "STATUS".to_owned(),
            "OBSERVED".to_owned(),
        ]];
        for c in &self.features {
            rows.push(vec![
                c.feature.title().to_owned(),
                c.status.as_str().to_owned(),
                match &c.hint {
                    Some(h) => format!("{} — {h}", c.observed),
                    None => c.observed.clone(),
                },
            ]);
        }
        table(f, &rows)?;
        writeln!(f)?;
        let mut rows = vec![vec![
            "HARDENING".to_owned(),
            "WEIGHT".to_owned(),
            "VERDICT".to_owned(),
            "OBSERVED".to_owned(),
            "RECOMMENDED".to_owned(),
            "REMEDY".to_owned(),
        ]];
        for c in &self.hardening.checks {
            rows.push(vec![
                c.id.to_owned(),
                c.weight.to_string(),
                c.verdict.as_str().to_owned(),
                c.observed.clone(),
                c.recommended.to_owned(),
                c.remedy.clone().unwrap_or_default(),
            ]);
        }
        table(f, &rows)?;
        let e = &self.hardening.exposure;
        writeln!(f)?;
        writeln!(
            f,
            "exposure {:.1} {} (scored weight {} of {})",
            e.score,
            e.label.as_str(),
            e.known_weight,
            e.total_weight
        )
    }
}
