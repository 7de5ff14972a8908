//! The checked-in OpenAPI document is the one the handlers generate. After changing
//! the API, regenerate it: `BULKHEAD_BLESS=1 cargo test -p bulkhead-daemon --test openapi`.

use std::path::Path;

#[test]
fn docs_openapi_json_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = bulkhead_daemon::api::openapi_json();
    if std::env::var_os("BULKHEAD_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json is stale: run BULKHEAD_BLESS=1 cargo test -p bulkhead-daemon --test openapi"
    );
}

#[test]
fn every_route_but_health_requires_a_bearer_token() {
    let doc = bulkhead_daemon::api::openapi();
    let mut operations = 0;
    for (path, item) in &doc.paths.paths {
        for operation in [&item.get, &item.post, &item.delete].into_iter().flatten() {
            operations += 1;
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            assert_eq!(secured, path != "/health", "{path}");
        }
    }
    assert_eq!(operations, 20);
}
