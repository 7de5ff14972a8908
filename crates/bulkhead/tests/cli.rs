//! The CLI end to end: exit codes, output formats, the store it writes, and what it
//! refuses. Each test uses its own temporary state root.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn bulkhead(state: &Path) -> Command {
    let mut command = Command::cargo_bin("bulkhead").expect("binary");
    command
        .env("BULKHEAD_STATE_ROOT", state)
        .env("BULKHEAD_ACTOR", "test")
        .env_remove("BULKHEAD_INSTANCE");
    command
}

fn store_path(state: &Path) -> PathBuf {
    state.join("bh").join("state.db")
}

#[test]
fn validate_examples_passes() {
    let state = tempfile::tempdir().expect("tempdir");
    bulkhead(state.path())
        .arg("validate")
        .arg(examples())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "3 tenants (db, ingress, web), 3 workloads",
        ));
}

#[test]
fn invalid_input_exits_3_names_place_and_writes_nothing() {
    let state = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: web\nspec:\n  quota:\n    memory: 12Gx\n",
    )
    .expect("write");
    for verb in ["validate", "plan", "apply"] {
        bulkhead(state.path())
            .arg(verb)
            .arg(&file)
            .assert()
            .code(3)
            .stderr(predicate::str::contains(
                "t.yaml:7:13: spec.quota.memory: \"12Gx\" is not a byte quantity (expected e.g. 512Mi, 2Gi or 1G)",
            ))
            .stderr(predicate::str::contains("nothing was changed"));
    }
    assert!(
        !store_path(state.path()).exists(),
        "invalid input created a store"
    );
    assert_eq!(std::fs::read_dir(state.path()).expect("read").count(), 0);
}

#[test]
fn validate_json_lists_errors() {
    let state = tempfile::tempdir().expect("tempdir");
    let output = bulkhead(state.path())
        .args(["validate", "-", "-o", "json"])
        .write_stdin("apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: Web\n")
        .assert()
        .code(3)
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&output).expect("json");
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"][0]["file"], "<stdin>");
    assert_eq!(report["errors"][0]["line"], 4);
    assert_eq!(report["errors"][0]["path"], "metadata.name");
}

#[test]
fn plan_apply_plan_and_history() {
    let state = tempfile::tempdir().expect("tempdir");
    bulkhead(state.path())
        .args(["plan", "--detailed-exitcode"])
        .arg(examples())
        .assert()
        .code(4)
        .stdout(predicate::str::contains("+ Tenant/web"))
        .stdout(predicate::str::contains(
            "7 to add, 0 to change, 0 to remove.",
        ));
    assert!(
        !store_path(state.path()).exists(),
        "plan must not create state"
    );

    bulkhead(state.path())
        .args(["apply", "--record-only", "-m", "first"])
        .arg(examples())
        .assert()
        .success()
        .stdout(predicate::str::contains("Applied as revision 1"));
    bulkhead(state.path())
        .arg("plan")
        .arg(examples())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "No changes: the desired state matches the last applied revision.",
        ));

    // Change one quota: the plan shows that field and nothing else.
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&examples(), dir.path());
    let web = dir.path().join("tenants/web.yaml");
    let text = std::fs::read_to_string(&web)
        .expect("read")
        .replace("memory: 2Gi", "memory: 3Gi");
    std::fs::write(&web, text).expect("write");
    let plan = bulkhead(state.path())
        .args(["plan", "-o", "json"])
        .arg(dir.path())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let plan: serde_json::Value = serde_json::from_slice(&plan).expect("json");
    assert_eq!(plan["against_revision"], 1);
    assert_eq!(
        (
            plan["add"].clone(),
            plan["change"].clone(),
            plan["remove"].clone()
        ),
        (0.into(), 1.into(), 0.into())
    );
    let diff = plan["changes"][0]["unified_diff"].as_str().expect("diff");
    assert!(
        diff.contains("-    memory: 2Gi") && diff.contains("+    memory: 3Gi"),
        "{diff}"
    );

    bulkhead(state.path())
        .args(["apply", "--record-only"])
        .arg(dir.path())
        .assert()
        .success();
    bulkhead(state.path())
        .args(["history", "diff", "1", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("+    memory: 3Gi"));
    bulkhead(state.path())
        .args(["get", "tenant", "web", "-o", "yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("memory: 3Gi"))
        // defaults are visible
        .stdout(predicate::str::contains("state: active"));
    bulkhead(state.path())
        .args(["audit", "log"])
        .assert()
        .success()
        .stdout(predicate::str::contains("update  tenant/web"));
    bulkhead(state.path())
        .args(["audit", "verify"])
        .assert()
        .success();
}

#[test]
fn get_from_files_shows_defaults() {
    let state = tempfile::tempdir().expect("tempdir");
    bulkhead(state.path())
        .args(["get", "tenant", "db", "-o", "json", "-f"])
        .arg(examples())
        .assert()
        .success()
        .stdout(predicate::str::contains("\"restart\": \"on-failure\""))
        .stdout(predicate::str::contains("\"sameTenant\": \"allow\""));
}

#[test]
fn plan_shows_a_removed_exception_at_tenant_level() {
    let state = tempfile::tempdir().expect("tempdir");
    bulkhead(state.path())
        .args(["apply", "--record-only"])
        .arg(examples())
        .assert()
        .success();
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&examples(), dir.path());
    let db = dir.path().join("tenants/db.yaml");
    let text = std::fs::read_to_string(&db)
        .expect("read")
        .replace("from: [{ tenant: web }]", "from: [{ tenant: ingress }]");
    std::fs::write(&db, text).expect("write");
    bulkhead(state.path())
        .arg("plan")
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("- web -> db  TCP 5432"));
}

#[test]
fn describe_shows_reachability() {
    let state = tempfile::tempdir().expect("tempdir");
    bulkhead(state.path())
        .args(["describe", "tenant", "db", "-f"])
        .arg(examples())
        .assert()
        .success()
        .stdout(predicate::str::contains("reached by web  TCP 5432"))
        .stdout(predicate::str::contains(
            "reaches    external:dns  TCP 53, UDP 53",
        ));
}

#[test]
fn get_before_apply_says_what_to_do() {
    let state = tempfile::tempdir().expect("tempdir");
    bulkhead(state.path())
        .args(["get", "tenants"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "has nothing applied yet (expected `bulkhead apply DIR` first",
        ));
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Applies the examples three times (21 object intents + outcomes…), then tampers with
/// the database behind the CLI's back and checks `audit verify` names the first bad seq.
fn tampered(mutate: impl FnOnce(&rusqlite::Connection)) -> String {
    let state = tempfile::tempdir().expect("tempdir");
    bulkhead(state.path())
        .args(["apply", "--record-only"])
        .arg(examples())
        .assert()
        .success();
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&examples(), dir.path());
    let web = dir.path().join("tenants/web.yaml");
    let text = std::fs::read_to_string(&web)
        .expect("read")
        .replace("pids: 512", "pids: 600");
    std::fs::write(&web, text).expect("write");
    bulkhead(state.path())
        .args(["apply", "--record-only"])
        .arg(dir.path())
        .assert()
        .success();
    {
        let connection = rusqlite::Connection::open(store_path(state.path())).expect("open");
        // An attacker with the file can drop the guards; verification must still catch it.
        connection
            .execute_batch("DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;")
            .expect("drop triggers");
        mutate(&connection);
    }
    let output = bulkhead(state.path())
        .args(["audit", "verify"])
        .assert()
        .code(5)
        .get_output()
        .stdout
        .clone();
    String::from_utf8(output).expect("utf8")
}

#[test]
fn audit_verify_refuses_update_and_delete_through_sql() {
    let state = tempfile::tempdir().expect("tempdir");
    bulkhead(state.path())
        .args(["apply", "--record-only"])
        .arg(examples())
        .assert()
        .success();
    let connection = rusqlite::Connection::open(store_path(state.path())).expect("open");
    assert!(
        connection
            .execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1", [])
            .is_err()
    );
    assert!(
        connection
            .execute("DELETE FROM audit_log WHERE seq = 1", [])
            .is_err()
    );
}

#[test]
fn audit_verify_names_an_edited_record() {
    let report = tampered(|c| {
        c.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3", [])
            .expect("edit");
    });
    assert!(
        report.contains("first bad record is seq 3 (Edited)"),
        "{report}"
    );
}

#[test]
fn audit_verify_names_a_deleted_record() {
    let report = tampered(|c| {
        c.execute("DELETE FROM audit_log WHERE seq = 5", [])
            .expect("delete");
    });
    assert!(
        report.contains("first bad record is seq 5 (Deleted)"),
        "{report}"
    );
}

#[test]
fn audit_verify_names_a_reordered_record() {
    let report = tampered(|c| {
        // Swap the contents of records 4 and 6 (their rowids stay in place).
        c.execute_batch(
            "CREATE TEMP TABLE a AS SELECT * FROM audit_log WHERE seq IN (4, 6);
             DELETE FROM audit_log WHERE seq IN (4, 6);
             INSERT INTO audit_log SELECT * FROM a WHERE seq = 6;
             INSERT INTO audit_log SELECT * FROM a WHERE seq = 4;",
        )
        .expect("reorder");
    });
    assert!(
        report.contains("first bad record is seq 4 (Reordered)"),
        "{report}"
    );
}

#[test]
fn schema_and_completions() {
    let state = tempfile::tempdir().expect("tempdir");
    let schema = bulkhead(state.path())
        .args(["schema", "tenant"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let schema: serde_json::Value = serde_json::from_slice(&schema).expect("json");
    assert!(schema["properties"]["spec"].is_object(), "{schema}");
    bulkhead(state.path())
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("_bulkhead()"));
}

#[test]
fn doctor_reports_this_host() {
    let state = tempfile::tempdir().expect("tempdir");
    let report = bulkhead(state.path())
        .args(["doctor", "-o", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&report).expect("json");
    let score = report["hardening"]["exposure"]["score"]
        .as_f64()
        .expect("score");
    assert!((0.0..=10.0).contains(&score), "{score}");
    assert!(report["features"].as_array().is_some_and(|f| !f.is_empty()));
}

#[test]
fn k8s_render_audits_clean_and_a_hand_made_namespace_does_not() {
    let state = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    bulkhead(state.path())
        .args(["k8s", "render", "-f"])
        .arg(examples())
        .arg("--out")
        .arg(out.path())
        .assert()
        .success();
    let web = std::fs::read_to_string(out.path().join("tenant-web.yaml")).expect("rendered web");
    assert!(
        web.contains("pod-security.kubernetes.io/enforce: restricted"),
        "{web}"
    );
    assert!(
        web.contains("kind: NetworkPolicy") && web.contains("bulkhead-default-deny"),
        "{web}"
    );
    bulkhead(state.path())
        .args(["k8s", "audit", "-f"])
        .arg(out.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("no findings"));

    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/k8s-bad");
    let table = bulkhead(state.path())
        .args(["k8s", "audit", "-f"])
        .arg(&bad)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(table).expect("utf8");
    assert!(table.contains("BH-K8S-"), "{table}");
    assert!(table.contains("team-a"), "{table}");
    let sarif = bulkhead(state.path())
        .args([
            "k8s",
            "audit",
            "--format",
            "sarif",
            "--fail-on",
            "never",
            "-f",
        ])
        .arg(&bad)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let sarif: serde_json::Value = serde_json::from_slice(&sarif).expect("sarif json");
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert!(results.len() >= 3, "{sarif}");
    let junit = bulkhead(state.path())
        .args([
            "k8s",
            "audit",
            "--format",
            "junit",
            "--fail-on",
            "never",
            "-f",
        ])
        .arg(&bad)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let junit = String::from_utf8(junit).expect("utf8");
    assert!(
        junit.starts_with("<?xml") && junit.contains("<failure"),
        "{junit}"
    );
}
