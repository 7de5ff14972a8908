//! The fuzz corpora (`fuzz/corpus/*`) as ordinary tests, since CI has no nightly
//! toolchain for cargo-fuzz: every saved input, and seeded mutations of each, must parse
//! to a value or to diagnostics — never a panic or a stack overflow.

use std::path::{Path, PathBuf};

fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "empty corpus {}", dir.display());
    inputs
}

/// xorshift: deterministic mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"[", b"]", b"{", b"}", b":", b"- ", b"\n  ", b"&a ", b"*a", b"---\n", b"\"", b"0", b"Gi",
    b"m", b"/", b"-", b"\t", b"~",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if !out.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at.min(out.len())..end);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, piece.iter().copied());
            }
            2 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = out[i].wrapping_add(1 + rng.below(3) as u8);
            }
            _ => {
                let start = rng.below(out.len() + 1);
                let end = (start + rng.below(32)).min(out.len());
                let copy = out[start..end].to_vec();
                out.splice(at..at, copy);
            }
        }
    }
    out
}

#[test]
fn spec_corpus_never_panics() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for (path, bytes) in corpus("spec") {
        for round in 0..200 {
            let input = if round == 0 {
                bytes.clone()
            } else {
                mutate(&mut rng, &bytes)
            };
            if let Ok(text) = std::str::from_utf8(&input) {
                let result =
                    std::panic::catch_unwind(|| bulkhead_spec::load_str("fuzz.yaml", text));
                assert!(
                    result.is_ok(),
                    "{} round {round} panicked on:\n{text}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn quantity_corpus_never_panics() {
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    for (path, bytes) in corpus("quantity") {
        for round in 0..500 {
            let input = if round == 0 {
                bytes.clone()
            } else {
                mutate(&mut rng, &bytes)
            };
            if let Ok(text) = std::str::from_utf8(&input) {
                let result = std::panic::catch_unwind(|| {
                    let _ = bulkhead_spec::Cpu::parse(text);
                    let _ = bulkhead_spec::Bytes::parse(text);
                    let _ = bulkhead_spec::Bandwidth::parse(text);
                    let _ = bulkhead_spec::PortSpec::parse(text);
                    let _ = bulkhead_spec::parse_cidr(text);
                });
                assert!(
                    result.is_ok(),
                    "{} round {round} panicked on {text:?}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn valid_corpus_inputs_round_trip() {
    // Inputs that validate must survive canonical rendering and re-loading unchanged.
    for (path, bytes) in corpus("spec") {
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        if let Ok(desired) = bulkhead_spec::load_str("corpus.yaml", &text) {
            let yaml = desired.to_yaml().expect("render");
            let again = bulkhead_spec::load_str("canonical.yaml", &yaml).unwrap_or_else(|e| {
                panic!(
                    "{}: canonical form does not load:\n{e}\n{yaml}",
                    path.display()
                )
            });
            assert_eq!(again, desired, "{}", path.display());
        }
    }
}
