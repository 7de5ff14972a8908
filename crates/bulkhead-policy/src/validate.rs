//! Checks on raw objects, mirroring the Kubernetes API server's validation of
//! NetworkPolicy (peers, ports, ipBlocks) plus the identity rules a cluster enforces.

use ipnet::IpNet;

use crate::error::{InvalidKind, ValidationError};
use crate::model::{IpBlock, NetworkPolicy, Peer, PortRef, PortSpec};

/// Parses a CIDR the way the API server does: host bits may be set and are dropped.
pub(crate) fn parse_cidr(value: &str) -> Result<IpNet, InvalidKind> {
    if value.trim().is_empty() {
        return Err(InvalidKind::EmptyCidr);
    }
    value
        .trim()
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .map_err(|_| InvalidKind::InvalidCidr {
            value: value.to_owned(),
        })
}

/// Whether `name` is an IANA service name (what a named port must be).
pub(crate) fn is_port_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=15).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.iter().any(u8::is_ascii_lowercase)
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Every problem in `policy`, appended to `errors`.
pub(crate) fn policy(policy: &NetworkPolicy, errors: &mut Vec<ValidationError>) {
    let object = format!("policy {}/{}", policy.namespace, policy.name);
    if policy.name.is_empty() {
        errors.push(ValidationError::new(
            &object,
            "metadata.name",
            InvalidKind::EmptyName,
        ));
    }
    if policy.namespace.is_empty() {
        errors.push(ValidationError::new(
            &object,
            "metadata.namespace",
            InvalidKind::EmptyName,
        ));
    }
    policy
        .pod_selector
        .validate(&object, "spec.podSelector", errors);
    for (i, rule) in policy.ingress.iter().enumerate() {
        rule_parts(
            &object,
            &format!("spec.ingress[{i}]"),
            "from",
            &rule.from,
            &rule.ports,
            errors,
        );
    }
    for (i, rule) in policy.egress.iter().enumerate() {
        rule_parts(
            &object,
            &format!("spec.egress[{i}]"),
            "to",
            &rule.to,
            &rule.ports,
            errors,
        );
    }
}

fn rule_parts(
    object: &str,
    path: &str,
    peers_field: &str,
    peers: &[Peer],
    ports: &[PortSpec],
    errors: &mut Vec<ValidationError>,
) {
    for (i, p) in peers.iter().enumerate() {
        peer(object, &format!("{path}.{peers_field}[{i}]"), p, errors);
    }
    for (i, p) in ports.iter().enumerate() {
        if let Err(kind) = port(p) {
            errors.push(ValidationError::new(
                object,
                format!("{path}.ports[{i}]"),
                kind,
            ));
        }
    }
}

fn peer(object: &str, path: &str, peer: &Peer, errors: &mut Vec<ValidationError>) {
    let has_selector = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    match (&peer.ip_block, has_selector) {
        (None, false) => errors.push(ValidationError::new(object, path, InvalidKind::EmptyPeer)),
        (Some(_), true) => errors.push(ValidationError::new(
            object,
            path,
            InvalidKind::IpBlockWithSelector,
        )),
        (Some(block), false) => {
            if let Err((field, kind)) = ip_block(block) {
                errors.push(ValidationError::new(
                    object,
                    format!("{path}.ipBlock.{field}"),
                    kind,
                ));
            }
        }
        (None, true) => {
            if let Some(selector) = &peer.pod_selector {
                selector.validate(object, &format!("{path}.podSelector"), errors);
            }
            if let Some(selector) = &peer.namespace_selector {
                selector.validate(object, &format!("{path}.namespaceSelector"), errors);
            }
        }
    }
}

/// The parsed block, or the field at fault and why.
pub(crate) fn ip_block(block: &IpBlock) -> Result<(IpNet, Vec<IpNet>), (String, InvalidKind)> {
    let cidr = parse_cidr(&block.cidr).map_err(|kind| ("cidr".to_owned(), kind))?;
    let mut except = Vec::with_capacity(block.except.len());
    for (i, value) in block.except.iter().enumerate() {
        let field = format!("except[{i}]");
        let hole = parse_cidr(value).map_err(|kind| (field.clone(), kind))?;
        // A strict subset: inside cidr and with a longer prefix (same family).
        if !cidr.contains(&hole) || hole.prefix_len() <= cidr.prefix_len() {
            return Err((
                field,
                InvalidKind::ExceptOutsideCidr {
                    cidr: block.cidr.clone(),
                    except: value.clone(),
                },
            ));
        }
        except.push(hole);
    }
    Ok((cidr, except))
}

/// The port spec's problem, if any.
pub(crate) fn port(spec: &PortSpec) -> Result<(), InvalidKind> {
    match (&spec.port, spec.end_port) {
        (Some(PortRef::Number(0)), _) => Err(InvalidKind::PortZero),
        (Some(PortRef::Name(name)), _) if !is_port_name(name) => {
            Err(InvalidKind::InvalidPortName { name: name.clone() })
        }
        (None, Some(end_port)) => Err(InvalidKind::EndPortWithoutPort { end_port }),
        (Some(PortRef::Name(name)), Some(end_port)) => Err(InvalidKind::EndPortWithNamedPort {
            end_port,
            name: name.clone(),
        }),
        (Some(PortRef::Number(port)), Some(end_port)) if end_port < *port => {
            Err(InvalidKind::EndPortBeforePort {
                port: *port,
                end_port,
            })
        }
        _ => Ok(()),
    }
}
