//! The running kernel's build configuration from `/proc/config.gz`
//! (`CONFIG_IKCONFIG_PROC`), used when modules and sysfs do not tell whether
//! something is built in.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// A kernel config option's value, as far as doctor cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tristate {
    Yes,
    Module,
    No,
}

/// Parsed `CONFIG_*` options.
#[derive(Debug, Clone, Default)]
pub(crate) struct KernelConfig {
    options: BTreeMap<String, String>,
}

/// Refuse configs that inflate beyond this (a real one is ~300 KiB).
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

impl KernelConfig {
    /// Reads a gzip-compressed config; `None` when absent, unreadable or corrupt.
    pub(crate) fn load(path: &Path) -> Option<Self> {
        let file = std::fs::File::open(path).ok()?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(file)
            .take(MAX_CONFIG_BYTES)
            .read_to_string(&mut text)
            .ok()?;
        Some(Self::parse(&text))
    }

    pub(crate) fn parse(text: &str) -> Self {
        let options = text
            .lines()
            .filter_map(|l| l.strip_prefix("CONFIG_"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        Self { options }
    }

    /// `name` without the `CONFIG_` prefix; unset options are [`Tristate::No`].
    pub(crate) fn get(&self, name: &str) -> Tristate {
        match self.options.get(name).map(String::as_str) {
            Some("y") => Tristate::Yes,
            Some("m") => Tristate::Module,
            _ => Tristate::No,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_tristates() {
        let cfg = KernelConfig::parse(
            "CONFIG_NF_TABLES=y\nCONFIG_NET_SCH_TBF=m\n# CONFIG_NET_SCH_CAKE is not set\nCONFIG_LSM=\"landlock,yama\"\n",
        );
        assert_eq!(cfg.get("NF_TABLES"), Tristate::Yes);
        assert_eq!(cfg.get("NET_SCH_TBF"), Tristate::Module);
        assert_eq!(cfg.get("NET_SCH_CAKE"), Tristate::No);
    }

    #[test]
    fn loads_gzip_and_tolerates_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("config.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&good).unwrap(),
            Default::default(),
        );
        enc.write_all(b"CONFIG_NF_TABLES=m\n").unwrap();
        enc.finish().unwrap();
        assert_eq!(
            KernelConfig::load(&good).unwrap().get("NF_TABLES"),
            Tristate::Module
        );

        let bad = dir.path().join("bad.gz");
        std::fs::write(&bad, b"not gzip").unwrap();
        assert!(KernelConfig::load(&bad).is_none());
        assert!(KernelConfig::load(&dir.path().join("missing.gz")).is_none());
    }
}
