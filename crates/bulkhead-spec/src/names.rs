//! Names: DNS-1123 labels for objects, Kubernetes syntax for label keys and values.

/// Longest object name. DNS-1123 labels allow 63; every host object name derives from it.
pub const MAX_NAME_LEN: usize = 63;

/// Tenant names that would collide with platform objects or confuse operators.
pub const RESERVED_TENANT_NAMES: &[&str] = &[
    "default",
    "host",
    "platform",
    "bulkhead",
    "all",
    "none",
    "system",
    "root",
    "kube-system",
    "kube-public",
    "kube-node-lease",
];

/// Why a name is not acceptable, as a message that says what was expected.
pub fn check_name(text: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit";
    if text.is_empty() {
        return Err(format!("name is empty ({EXPECTED})"));
    }
    if text.len() > MAX_NAME_LEN {
        return Err(format!(
            "name is {} characters long (expected at most {MAX_NAME_LEN})",
            text.len()
        ));
    }
    if text.contains('/') || text.contains("..") || text.contains('\0') {
        return Err(format!("{text:?} contains path characters ({EXPECTED})"));
    }
    let bytes = text.as_bytes();
    let valid_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    if !bytes.iter().all(valid_char) {
        return Err(format!("{text:?} is not a valid name ({EXPECTED})"));
    }
    if bytes.first() == Some(&b'-') || bytes.last() == Some(&b'-') {
        return Err(format!("{text:?} starts or ends with '-' ({EXPECTED})"));
    }
    Ok(())
}

/// Checks a tenant name: a valid name that is not reserved.
pub fn check_tenant_name(text: &str) -> Result<(), String> {
    check_name(text)?;
    if RESERVED_TENANT_NAMES.contains(&text) || text.starts_with("kube-") {
        return Err(format!(
            "{text:?} is reserved (expected a name other than {} or kube-*)",
            RESERVED_TENANT_NAMES.join(", ")
        ));
    }
    Ok(())
}

fn is_label_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && text
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
        && text
            .as_bytes()
            .last()
            .is_some_and(u8::is_ascii_alphanumeric)
}

/// Checks a label key: `name` or `prefix/name`, as in Kubernetes.
pub fn check_label_key(text: &str) -> Result<(), String> {
    let (prefix, name) = match text.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, text),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty() && p.len() <= 253 && p.split('.').all(|part| check_name(part).is_ok())
    });
    if prefix_ok && is_label_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a label key (expected [prefix/]name, name up to 63 characters of letters, digits, '-', '_' and '.')"
        ))
    }
}

/// Checks a label value: empty, or up to 63 characters as in Kubernetes.
pub fn check_label_value(text: &str) -> Result<(), String> {
    if text.is_empty() || is_label_name(text) {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a label value (expected up to 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("web-1").is_ok());
        assert!(check_name("../etc").is_err());
        assert!(check_name("Web").is_err());
        assert!(check_name("-web").is_err());
        assert!(check_name(&"a".repeat(64)).is_err());
        assert!(check_tenant_name("default").is_err());
        assert!(check_tenant_name("kube-foo").is_err());
        assert!(check_tenant_name("acme").is_ok());
    }

    #[test]
    fn labels() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("bulkhead.dev/tier").is_ok());
        assert!(check_label_key("/tier").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1.2_3").is_ok());
        assert!(check_label_value("-x").is_err());
    }
}
