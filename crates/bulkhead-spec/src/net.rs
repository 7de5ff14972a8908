//! Network values of the model: protocols, port specs and CIDR blocks.

use std::borrow::Cow;
use std::fmt;

use ipnet::IpNet;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};

/// A transport protocol, as Kubernetes NetworkPolicy names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// TCP, the default.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses `tcp`, `UDP`, `sctp` in any case.
    pub fn parse(text: &str) -> Option<Protocol> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lowercase name, as written in port specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which ports a rule covers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortMatch {
    /// A port range, inclusive; a single port has `first == last`.
    Range {
        /// First port.
        first: u16,
        /// Last port, at least `first`.
        last: u16,
    },
    /// A named port, resolved on the destination workload.
    Named(String),
}

/// A port spec: `443/tcp`, `53/udp`, `8000-8100/tcp`, `http` (named), or `443` (TCP).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    /// The ports.
    pub ports: PortMatch,
    /// The protocol.
    pub protocol: Protocol,
}

/// Why a port spec did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Not of the form `PORT[-PORT][/PROTOCOL]` or `NAME[/PROTOCOL]`.
    #[error(
        "{0:?} is not a port spec (expected e.g. 443/tcp, 53/udp, 8000-8100/tcp or a port name)"
    )]
    Malformed(String),
    /// A number outside 1..=65535.
    #[error("port {0} is out of range (expected 1-65535)")]
    OutOfRange(String),
    /// A range whose end is below its start.
    #[error("port range {0:?} ends before it starts (expected FIRST-LAST with FIRST <= LAST)")]
    Backwards(String),
    /// An unknown protocol.
    #[error("unknown protocol {0:?} (expected tcp, udp or sctp)")]
    Protocol(String),
}

fn parse_port_number(text: &str) -> Result<u16, PortError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortError::Malformed(text.to_owned()));
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => {
            u16::try_from(n).map_err(|_| PortError::OutOfRange(text.to_owned()))
        }
        _ => Err(PortError::OutOfRange(text.to_owned())),
    }
}

/// A valid port name: Kubernetes' IANA_SVC_NAME (at most 15 lowercase letters, digits and
/// inner hyphens, at least one letter, no double hyphen).
pub fn is_port_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 15
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && text.bytes().any(|b| b.is_ascii_lowercase())
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--")
}

impl PortSpec {
    /// Parses one port spec.
    pub fn parse(text: &str) -> Result<PortSpec, PortError> {
        let (ports, protocol) = match text.split_once('/') {
            Some((ports, protocol)) => (
                ports,
                Protocol::parse(protocol)
                    .ok_or_else(|| PortError::Protocol(protocol.to_owned()))?,
            ),
            None => (text, Protocol::Tcp),
        };
        let ports = if let Some((first, last)) = ports
            .split_once('-')
            .filter(|(a, _)| a.bytes().all(|b| b.is_ascii_digit()))
        {
            let first = parse_port_number(first)?;
            let last = parse_port_number(last)?;
            if last < first {
                return Err(PortError::Backwards(ports.to_owned()));
            }
            PortMatch::Range { first, last }
        } else if ports.bytes().all(|b| b.is_ascii_digit()) {
            let port = parse_port_number(ports)?;
            PortMatch::Range {
                first: port,
                last: port,
            }
        } else if is_port_name(ports) {
            PortMatch::Named(ports.to_owned())
        } else {
            return Err(PortError::Malformed(text.to_owned()));
        };
        Ok(PortSpec { ports, protocol })
    }

    /// A single numeric port.
    pub fn single(port: u16, protocol: Protocol) -> PortSpec {
        PortSpec {
            ports: PortMatch::Range {
                first: port,
                last: port,
            },
            protocol,
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ports {
            PortMatch::Range { first, last } if first == last => {
                write!(f, "{first}/{}", self.protocol)
            }
            PortMatch::Range { first, last } => write!(f, "{first}-{last}/{}", self.protocol),
            PortMatch::Named(name) => write!(f, "{name}/{}", self.protocol),
        }
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for PortSpec {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("PortSpec")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a port, a port range or a port name, with an optional protocol (tcp by default): 443/tcp, 53/udp, 8000-8100/tcp, http",
            "anyOf": [
                { "type": "string", "pattern": "^([0-9]{1,5}(-[0-9]{1,5})?|[a-z0-9-]{1,15})(/(tcp|udp|sctp|TCP|UDP|SCTP))?$" },
                { "type": "integer", "minimum": 1, "maximum": 65535 }
            ]
        })
    }
}

/// A CIDR block with optional exceptions, like a NetworkPolicy ipBlock.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
pub struct CidrBlock {
    /// The block, normalised to its network address.
    #[schemars(with = "String")]
    #[serde(serialize_with = "serialize_display")]
    pub cidr: IpNet,
    /// Sub-blocks excluded from it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    #[serde(serialize_with = "serialize_display_list")]
    pub except: Vec<IpNet>,
}

pub(crate) fn serialize_display<T: fmt::Display, S: Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

pub(crate) fn serialize_display_list<T: fmt::Display, S: Serializer>(
    values: &[T],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(ToString::to_string))
}

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a host route). Host bits must be
/// zero: `10.0.0.1/8` is an error, since it usually hides a typo.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net: IpNet = match text.parse() {
        Ok(net) => net,
        Err(_) => match text.parse::<std::net::IpAddr>() {
            Ok(addr) => IpNet::from(addr),
            Err(_) => {
                return Err(format!(
                    "{text:?} is not a CIDR block (expected e.g. 203.0.113.0/24 or 2001:db8::/32)"
                ));
            }
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "{text:?} has host bits set (expected the network address {})",
            net.trunc()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(
            PortSpec::parse("443/tcp"),
            Ok(PortSpec::single(443, Protocol::Tcp))
        );
        assert_eq!(
            PortSpec::parse("53/UDP"),
            Ok(PortSpec::single(53, Protocol::Udp))
        );
        assert_eq!(
            PortSpec::parse("443"),
            Ok(PortSpec::single(443, Protocol::Tcp))
        );
        assert_eq!(
            PortSpec::parse("8000-8100/tcp").map(|p| p.ports),
            Ok(PortMatch::Range {
                first: 8000,
                last: 8100
            })
        );
        assert_eq!(
            PortSpec::parse("http").map(|p| p.ports),
            Ok(PortMatch::Named("http".into()))
        );
        assert_eq!(
            PortSpec::parse("0/tcp"),
            Err(PortError::OutOfRange("0".into()))
        );
        assert_eq!(
            PortSpec::parse("70000"),
            Err(PortError::OutOfRange("70000".into()))
        );
        assert_eq!(
            PortSpec::parse("90-80"),
            Err(PortError::Backwards("90-80".into()))
        );
        assert_eq!(
            PortSpec::parse("80/icmp"),
            Err(PortError::Protocol("icmp".into()))
        );
        assert!(matches!(
            PortSpec::parse("HTTP"),
            Err(PortError::Malformed(_))
        ));
        assert!(matches!(
            PortSpec::parse("a-very-long-port-name"),
            Err(PortError::Malformed(_))
        ));
    }

    #[test]
    fn cidrs() {
        assert!(parse_cidr("203.0.113.0/24").is_ok());
        assert!(parse_cidr("203.0.113.7").is_ok());
        assert!(parse_cidr("203.0.113.7/24").is_err());
        assert!(parse_cidr("300.0.0.0/8").is_err());
        assert!(parse_cidr("2001:db8::/32").is_ok());
    }
}
