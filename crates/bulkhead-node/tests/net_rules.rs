//! The firewall compiler without a kernel: the examples' ruleset (golden),
//! and the compiled sets against the policy engine on random desired states.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use bulkhead_node::naming::Instance;
use bulkhead_node::net::firewall::{self, Ruleset};

fn examples() -> bulkhead_spec::Desired {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    bulkhead_spec::load(&[dir]).expect("the examples are valid")
}

/// Addresses in name order from .2, as the store would allocate them.
fn addresses(desired: &bulkhead_spec::Desired) -> BTreeMap<String, Ipv4Addr> {
    let range = match desired.platform.spec.network.tenant_range {
        ipnet::IpNet::V4(r) => r,
        ipnet::IpNet::V6(_) => panic!("IPv4 range expected"),
    };
    let mut taken = std::collections::BTreeSet::new();
    desired
        .tenants
        .keys()
        .map(|t| {
            let a = bulkhead_node::net::allocate(range, &taken).expect("room");
            taken.insert(a);
            (t.to_string(), a)
        })
        .collect()
}

fn compiled(desired: &bulkhead_spec::Desired) -> Ruleset {
    let instance = Instance::new("bh", Path::new("/var/lib/bulkhead"));
    firewall::compile(&instance, desired, &addresses(desired)).expect("compiles")
}

#[test]
fn examples_ruleset_is_pinned() {
    let ruleset = compiled(&examples());
    insta::assert_snapshot!("examples_ruleset", ruleset.render());
    let deviations: Vec<String> = ruleset.deviations.iter().map(ToString::to_string).collect();
    insta::assert_debug_snapshot!("examples_deviations", deviations);
}
