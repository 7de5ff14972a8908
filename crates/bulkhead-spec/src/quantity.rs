//! Quantities, parsed once into exact integers.
//!
//! - [`Cpu`]: millicores. `2`, `1.5`, `500m` (Kubernetes' convention).
//! - [`Bytes`]: bytes. Binary suffixes `Ki Mi Gi Ti Pi Ei` (powers of 1024) and decimal
//!   suffixes `k M G T P E` (powers of 1000), as Kubernetes spells them; a decimal point
//!   is allowed when the result is a whole number of bytes (`1.5Gi`).
//! - [`Bandwidth`]: bits per second, written like `tc` does: `bit`, `kbit`, `Mbit`,
//!   `Gbit`, `Tbit` (powers of 1000). `100Mbit` is 100,000,000 bits per second.
//!
//! Each type prints back in a canonical spelling (the largest unit that divides exactly),
//! which is what `bulkhead get -o yaml` shows and what revisions store.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};

/// Why a quantity did not parse; the caller adds file, line and field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not of the form number + known suffix.
    #[error("{value:?} is not a {what} (expected e.g. {example})")]
    Malformed {
        /// The text as written.
        value: String,
        /// What kind of quantity was expected.
        what: &'static str,
        /// Examples of valid spellings.
        example: &'static str,
    },
    /// More precise than the unit allows (e.g. `0.0001` cores, `0.5` bytes).
    #[error("{value:?} is finer than {unit} (expected a whole number of {unit})")]
    TooPrecise {
        /// The text as written.
        value: String,
        /// The smallest unit.
        unit: &'static str,
    },
    /// Larger than the field can ever mean.
    #[error("{value:?} is too large (expected at most {max})")]
    TooLarge {
        /// The text as written.
        value: String,
        /// The ceiling, spelled canonically.
        max: String,
    },
    /// Zero or negative where a positive amount is needed.
    #[error("{value:?} must be greater than zero")]
    NotPositive {
        /// The text as written.
        value: String,
    },
}

/// A decimal number split into integer mantissa and the count of digits after the point.
struct Decimal {
    mantissa: u128,
    scale: u32,
}

fn split_number(text: &str) -> Option<(Decimal, &str)> {
    let end = text
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(text.len(), |(i, _)| i);
    let (number, suffix) = text.split_at(end);
    if number.is_empty() || number.matches('.').count() > 1 || number == "." {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    // More than 30 significant digits cannot be a sensible quantity; refuse rather than overflow.
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 30 || fraction.len() > 30 {
        return None;
    }
    let mantissa = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().ok()?
    };
    Some((
        Decimal {
            mantissa,
            scale: u32::try_from(fraction.len()).ok()?,
        },
        suffix,
    ))
}

/// `mantissa * multiplier / 10^scale`, exactly, or `None` when not a whole number.
fn exact(decimal: &Decimal, multiplier: u128) -> Result<u128, ()> {
    let product = decimal.mantissa.checked_mul(multiplier).ok_or(())?;
    let divisor = 10u128.checked_pow(decimal.scale).ok_or(())?;
    if product % divisor == 0 {
        Ok(product / divisor)
    } else {
        Err(())
    }
}

fn overflowed(decimal: &Decimal, multiplier: u128) -> bool {
    decimal.mantissa.checked_mul(multiplier).is_none()
}

/// What one quantity kind accepts: its name for messages, and its ceiling.
struct Kind {
    what: &'static str,
    example: &'static str,
    unit: &'static str,
    max: u64,
    max_text: fn() -> String,
}

/// Parses `number suffix` where `multiplier(suffix)` gives the suffix's scale, exactly,
/// into a positive integer no larger than the kind's ceiling.
fn parse_scaled(
    text: &str,
    kind: &Kind,
    multiplier: impl Fn(&str) -> Option<u128>,
) -> Result<u64, QuantityError> {
    let malformed = || QuantityError::Malformed {
        value: text.to_owned(),
        what: kind.what,
        example: kind.example,
    };
    let too_large = || QuantityError::TooLarge {
        value: text.to_owned(),
        max: (kind.max_text)(),
    };
    let (decimal, suffix) = split_number(text.trim()).ok_or_else(malformed)?;
    let multiplier = multiplier(suffix).ok_or_else(malformed)?;
    if overflowed(&decimal, multiplier) {
        return Err(too_large());
    }
    let value = exact(&decimal, multiplier).map_err(|()| QuantityError::TooPrecise {
        value: text.to_owned(),
        unit: kind.unit,
    })?;
    let value = u64::try_from(value).map_err(|_| too_large())?;
    if value == 0 {
        return Err(QuantityError::NotPositive {
            value: text.to_owned(),
        });
    }
    if value > kind.max {
        return Err(too_large());
    }
    Ok(value)
}

macro_rules! quantity_type {
    ($name:ident, $doc:literal, $schema_name:literal, $pattern:literal, $description:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u64);

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($schema_name)
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "description": $description,
                    "anyOf": [
                        { "type": "string", "pattern": $pattern },
                        { "type": "number", "exclusiveMinimum": 0 }
                    ]
                })
            }
        }

        impl std::str::FromStr for $name {
            type Err = QuantityError;
            fn from_str(text: &str) -> Result<Self, QuantityError> {
                Self::parse(text)
            }
        }
    };
}

quantity_type!(
    Cpu,
    "CPU time in millicores: `1500m` = 1.5 cores.",
    "Cpu",
    "^([0-9]+(\\.[0-9]{1,3})?|[0-9]+m)$",
    "CPU cores: 2, 1.5 or 500m (millicores)"
);
quantity_type!(
    Bytes,
    "A size in bytes.",
    "Bytes",
    "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$",
    "bytes: 512Mi, 2Gi, 1G (binary Ki..Ei, decimal k..E)"
);
quantity_type!(
    Bandwidth,
    "A rate in bits per second.",
    "Bandwidth",
    "^[0-9]+(\\.[0-9]+)?(bit|kbit|Mbit|Gbit|Tbit)$",
    "bits per second: 100Mbit, 1Gbit, 500kbit"
);

/// Most cores one tenant could ever be given.
const MAX_MILLICORES: u64 = 4096 * 1000;
/// Largest size any field may hold: 1 EiB.
const MAX_BYTES: u64 = 1 << 60;
/// Largest rate: 10 Tbit/s.
const MAX_BITS: u64 = 10_000_000_000_000;

impl Cpu {
    /// From millicores.
    pub const fn from_millis(millis: u64) -> Self {
        Cpu(millis)
    }
    /// Millicores.
    pub const fn millis(self) -> u64 {
        self.0
    }

    /// Parses `2`, `1.5`, `500m`.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        const KIND: Kind = Kind {
            what: "cpu quantity",
            example: "2, 1.5 or 500m",
            unit: "millicores",
            max: MAX_MILLICORES,
            max_text: || Cpu(MAX_MILLICORES).to_string(),
        };
        parse_scaled(text, &KIND, |suffix| match suffix {
            "" => Some(1000),
            "m" => Some(1),
            _ => None,
        })
        .map(Cpu)
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

const BINARY: [(&str, u32); 6] = [
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];
const DECIMAL: [(&str, u32); 6] = [("k", 1), ("M", 2), ("G", 3), ("T", 4), ("P", 5), ("E", 6)];

impl Bytes {
    /// From a byte count.
    pub const fn new(bytes: u64) -> Self {
        Bytes(bytes)
    }
    /// The byte count.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Parses `512Mi`, `2Gi`, `1G`, `1.5Gi`, `1048576`.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        const KIND: Kind = Kind {
            what: "byte quantity",
            example: "512Mi, 2Gi or 1G",
            unit: "bytes",
            max: MAX_BYTES,
            max_text: || Bytes(MAX_BYTES).to_string(),
        };
        parse_scaled(text, &KIND, |suffix| {
            if suffix.is_empty() {
                return Some(1);
            }
            let binary = BINARY
                .iter()
                .find(|(s, _)| *s == suffix)
                .map(|(_, p)| 1024u128.pow(*p));
            binary.or_else(|| {
                DECIMAL
                    .iter()
                    .find(|(s, _)| *s == suffix)
                    .map(|(_, p)| 1000u128.pow(*p))
            })
        })
        .map(Bytes)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, power) in BINARY.iter().rev() {
            let unit = 1024u64.pow(*power);
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        for (suffix, power) in DECIMAL.iter().rev() {
            let unit = 1000u64.pow(*power);
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

const RATES: [(&str, u32); 5] = [
    ("bit", 0),
    ("kbit", 1),
    ("Mbit", 2),
    ("Gbit", 3),
    ("Tbit", 4),
];

impl Bandwidth {
    /// From bits per second.
    pub const fn from_bits_per_second(bits: u64) -> Self {
        Bandwidth(bits)
    }
    /// Bits per second.
    pub const fn bits_per_second(self) -> u64 {
        self.0
    }

    /// Parses `100Mbit`, `1Gbit`, `1.5Gbit`, `800kbit`.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        const KIND: Kind = Kind {
            what: "bandwidth (bits per second)",
            example: "100Mbit, 1Gbit or 500kbit",
            unit: "bits per second",
            max: MAX_BITS,
            max_text: || Bandwidth(MAX_BITS).to_string(),
        };
        parse_scaled(text, &KIND, |suffix| {
            RATES
                .iter()
                .find(|(s, _)| *s == suffix)
                .map(|(_, p)| 1000u128.pow(*p))
        })
        .map(Bandwidth)
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, power) in RATES.iter().rev() {
            let unit = 1000u64.pow(*power);
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}bit", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpu_spellings() {
        assert_eq!(Cpu::parse("2").map(Cpu::millis), Ok(2000));
        assert_eq!(Cpu::parse("1.5").map(Cpu::millis), Ok(1500));
        assert_eq!(Cpu::parse("500m").map(Cpu::millis), Ok(500));
        assert_eq!(Cpu::parse("0.25").map(Cpu::millis), Ok(250));
        assert!(matches!(
            Cpu::parse("0.0001"),
            Err(QuantityError::TooPrecise { .. })
        ));
        assert!(matches!(
            Cpu::parse("2 cores"),
            Err(QuantityError::Malformed { .. })
        ));
        assert!(matches!(
            Cpu::parse("1.5m"),
            Err(QuantityError::TooPrecise { .. })
        ));
        assert!(matches!(
            Cpu::parse("0"),
            Err(QuantityError::NotPositive { .. })
        ));
        assert!(matches!(
            Cpu::parse("100000"),
            Err(QuantityError::TooLarge { .. })
        ));
        assert!(matches!(
            Cpu::parse("-1"),
            Err(QuantityError::Malformed { .. })
        ));
    }

    #[test]
    fn byte_spellings() {
        assert_eq!(Bytes::parse("512Mi").map(Bytes::get), Ok(512 << 20));
        assert_eq!(Bytes::parse("2Gi").map(Bytes::get), Ok(2 << 30));
        assert_eq!(Bytes::parse("1G").map(Bytes::get), Ok(1_000_000_000));
        assert_eq!(Bytes::parse("1.5Gi").map(Bytes::get), Ok(1536 << 20));
        assert_eq!(Bytes::parse("4096").map(Bytes::get), Ok(4096));
        assert!(matches!(
            Bytes::parse("12Gx"),
            Err(QuantityError::Malformed { .. })
        ));
        assert!(matches!(
            Bytes::parse("1.5"),
            Err(QuantityError::TooPrecise { .. })
        ));
        assert!(matches!(
            Bytes::parse("99999999999Ti"),
            Err(QuantityError::TooLarge { .. })
        ));
        assert!(matches!(
            Bytes::parse("2Ei"),
            Err(QuantityError::TooLarge { .. })
        ));
        assert!(matches!(
            Bytes::parse("1KB"),
            Err(QuantityError::Malformed { .. })
        ));
        assert!(matches!(
            Bytes::parse("99999999999999999999999999999999999999999"),
            Err(QuantityError::Malformed { .. })
        ));
    }

    #[test]
    fn bandwidth_spellings() {
        assert_eq!(
            Bandwidth::parse("100Mbit").map(Bandwidth::bits_per_second),
            Ok(100_000_000)
        );
        assert_eq!(
            Bandwidth::parse("1.5Gbit").map(Bandwidth::bits_per_second),
            Ok(1_500_000_000)
        );
        assert!(matches!(
            Bandwidth::parse("100MB"),
            Err(QuantityError::Malformed { .. })
        ));
        assert!(matches!(
            Bandwidth::parse("100"),
            Err(QuantityError::Malformed { .. })
        ));
    }

    #[test]
    fn canonical_spelling() {
        assert_eq!(Bytes::new(1536 << 20).to_string(), "1536Mi");
        assert_eq!(Bytes::new(1_000_000_000).to_string(), "1G");
        assert_eq!(Bytes::new(1000 << 30).to_string(), "1000Gi");
        assert_eq!(Cpu::from_millis(1500).to_string(), "1500m");
        assert_eq!(Cpu::from_millis(3000).to_string(), "3");
        assert_eq!(
            Bandwidth::from_bits_per_second(2_500_000).to_string(),
            "2500kbit"
        );
    }

    proptest! {
        #[test]
        fn bytes_round_trip(n in 1u64..=MAX_BYTES) {
            let b = Bytes::new(n);
            prop_assert_eq!(Bytes::parse(&b.to_string()), Ok(b));
        }

        #[test]
        fn cpu_round_trip(n in 1u64..=MAX_MILLICORES) {
            let c = Cpu::from_millis(n);
            prop_assert_eq!(Cpu::parse(&c.to_string()), Ok(c));
        }

        #[test]
        fn bandwidth_round_trip(n in 1u64..=MAX_BITS) {
            let b = Bandwidth::from_bits_per_second(n);
            prop_assert_eq!(Bandwidth::parse(&b.to_string()), Ok(b));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = Bytes::parse(&s);
            let _ = Cpu::parse(&s);
            let _ = Bandwidth::parse(&s);
        }
    }
}
