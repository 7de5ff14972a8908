//! The subset of `/etc` a sandbox sees (see the module docs of
//! [`sandbox`](super) for why each entry is there).

/// uid of the `tenant` user of the synthesized `passwd`.
pub const TENANT_UID: u32 = 1000;
/// gid of the `tenant` group of the synthesized `group`.
pub const TENANT_GID: u32 = 1000;

/// Files written for the tenant rather than taken from the host.
pub const ETC_SYNTHESIZED: &[&str] = &["passwd", "group", "hosts", "hostname"];

/// Host files copied when the sandbox starts (those that exist).
pub const ETC_COPIED: &[&str] = &[
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "ld.so.cache",
    "localtime",
    "os-release",
    "protocols",
    "services",
    "ssl/openssl.cnf",
];

/// Host directories bound read-only (those that exist).
pub const ETC_BOUND: &[&str] = &["ssl/certs", "pki", "alternatives"];

/// `/etc/resolv.conf` of a tenant on the instance's network: only the
/// instance's resolver (the host's may name resolvers the tenant cannot
/// reach, or that should not learn its queries), no search list (a bare
/// `db` asks for the tenant `db`, nothing else).
pub(crate) fn resolv_conf(nameserver: std::net::IpAddr) -> String {
    format!(
        "# written by bulkhead: the instance's resolver on the tenant bridge\nnameserver {nameserver}\n"
    )
}

/// Contents of a synthesized file, by name.
pub(crate) fn synthesize(name: &str, tenant: &str) -> Option<String> {
    let text = match name {
        "passwd" => format!(
            "root:x:0:0:root:/:/bin/sh\n\
             tenant:x:{TENANT_UID}:{TENANT_GID}:{tenant}:/tmp:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group" => format!(
            "root:x:0:\n\
             tty:x:5:\n\
             tenant:x:{TENANT_GID}:\n\
             nogroup:x:65534:\n"
        ),
        "hosts" => format!(
            "127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             127.0.1.1\t{tenant}\n"
        ),
        "hostname" => format!("{tenant}\n"),
        _ => return None,
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_synthesized_file_has_contents() {
        for name in ETC_SYNTHESIZED {
            assert!(synthesize(name, "acme").is_some(), "{name}");
        }
        assert_eq!(synthesize("shadow", "acme"), None);
    }

    #[test]
    fn passwd_names_the_tenant_user_inside_the_range() {
        let passwd = synthesize("passwd", "acme").unwrap_or_default();
        assert!(passwd.contains("tenant:x:1000:1000:acme:/tmp:/bin/sh\n"));
        for line in passwd.lines() {
            let uid: u32 = line
                .split(':')
                .nth(2)
                .unwrap_or("x")
                .parse()
                .unwrap_or(u32::MAX);
            assert!(uid < super::super::ID_RANGE, "{line}");
        }
        assert!(
            synthesize("hosts", "acme")
                .unwrap_or_default()
                .contains("\tacme\n")
        );
    }

    #[test]
    fn resolv_conf_names_only_the_instance_resolver() {
        let text = resolv_conf(std::net::IpAddr::from([10, 240, 0, 1]));
        let servers: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("nameserver"))
            .collect();
        assert_eq!(servers, ["nameserver 10.240.0.1"]);
        assert!(!text.contains("search"));
    }

    #[test]
    fn nothing_secret_is_copied() {
        for secret in ["shadow", "gshadow", "sudoers", "machine-id", "ssh"] {
            assert!(!ETC_COPIED.contains(&secret) && !ETC_BOUND.contains(&secret));
        }
    }
}
