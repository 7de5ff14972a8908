//! Benchmark: what one change costs the Tenant controller with N Tenants.
//!
//! ```text
//! cargo xtask bench k8s-controller [-- --tenants N --sample K --out FILE]
//! ```
//!
//! A change to any Tenant's spec reconciles every Tenant (their renders name each
//! other). The run builds N Tenants (default 1,000; each with a quota, egress to the
//! next Tenant's database port and ingress from the previous one, so every Tenant
//! references others), changes one (a new generation), and reconciles all N with
//! `controller::reconcile` against a fake API server that answers at once (tower-test;
//! the server-side applies, prune lists, status and event writes all happen).
//!
//! - **shared**: one controller context for the N reconciles, as the running
//!   controller has: the validation, load and render of the set are computed once for
//!   that state of the store and shared;
//! - **baseline, in the same run**: every reconcile with a fresh context (a cold
//!   cache), which does what every reconcile did before the cache: validate each
//!   Tenant against the others (N validations and more rounds), load and render all N.
//!   Measured on a sample of K reconciles (default 10) and extrapolated to N.
//!
//! Every reconcile of both runs must end `Ready=True`; the run fails otherwise.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bulkhead_k8s::K8sOptions;
use bulkhead_k8s::apply::ApplyOptions;
use bulkhead_k8s::controller::{Context, FINALIZER, reconcile, tenant_resource};
use http::{Request, Response};
use kube::api::DynamicObject;
use kube::client::Body;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tower_test::mock;

struct Args {
    tenants: usize,
    sample: usize,
    out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        tenants: 1000,
        sample: 10,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--tenants" => args.tenants = number(value()?)?,
            "--sample" => args.sample = number(value()?)?,
            "--out" => args.out = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.tenants < 3 || args.sample == 0 || args.sample > args.tenants {
        return Err("need --tenants ≥ 3 and 1 ≤ --sample ≤ --tenants".to_owned());
    }
    Ok(args)
}

fn name(i: usize) -> String {
    format!("t{i:04}")
}

fn tenant(i: usize, n: usize, generation: i64) -> DynamicObject {
    let next = name((i + 1) % n);
    let previous = name((i + n - 1) % n);
    serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": { "name": name(i), "uid": format!("uid-{i}"), "generation": generation,
                      "resourceVersion": "1", "finalizers": [FINALIZER],
                      "labels": { "team": format!("team{}", i % 10) } },
        "spec": {
            "quota": { "memory": "1Gi", "cpu": "1" },
            "network": {
                "egress": [ { "to": [ { "tenant": next } ], "ports": ["5432/tcp"] } ],
                "ingress": [ { "from": [ { "tenant": previous } ], "ports": ["5432/tcp"] } ],
            },
        },
    }))
    .unwrap_or_else(|e| panic!("tenant object: {e}"))
}

fn respond(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap_or_else(|e| panic!("response: {e}"))
}

/// Answers every request at once; counts status writes with `Ready=True`.
async fn serve(mut handle: mock::Handle<Request<Body>, Response<Body>>, ready: Arc<AtomicUsize>) {
    while let Some((request, send)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes)
            .or_else(|_| serde_saphyr::from_slice::<Value>(&bytes))
            .unwrap_or(Value::Null);
        let path = parts.uri.path();
        let response = match parts.method.as_str() {
            "PATCH" if path.ends_with("/status") => {
                let is_ready = body["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                if is_ready {
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                respond(
                    200,
                    &json!({ "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": { "name": "x" } }),
                )
            }
            "PATCH" => {
                let mut object = body;
                if object["kind"] == "Namespace" {
                    object["status"] = json!({ "phase": "Active" });
                }
                respond(200, &object)
            }
            "GET" => respond(
                200,
                &json!({ "kind": "List", "apiVersion": "v1", "metadata": {}, "items": [] }),
            ),
            "POST" => respond(201, &body),
            _ => respond(
                405,
                &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 405 }),
            ),
        };
        send.send_response(response);
    }
}

fn context(client: &kube::Client, writer: &Writer<DynamicObject>) -> Arc<Context> {
    Arc::new(Context::new(
        client.clone(),
        Vec::new(),
        writer.as_reader(),
        K8sOptions::default(),
        ApplyOptions {
            poll: Duration::from_millis(1),
            ..ApplyOptions::default()
        },
    ))
}

async fn run(args: &Args) -> Result<String, String> {
    let n = args.tenants;
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ready = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn(serve(handle, Arc::clone(&ready)));
    let client = kube::Client::new(service, "default");
    let mut writer = Writer::new(tenant_resource());
    for i in 0..n {
        writer.apply_watcher_event(&watcher::Event::Apply(tenant(i, n, 1)));
    }
    // The change: t0000 gets a new generation; every Tenant is reconciled.
    writer.apply_watcher_event(&watcher::Event::Apply(tenant(0, n, 2)));
    let objects: Vec<Arc<DynamicObject>> = (0..n)
        .map(|i| Arc::new(tenant(i, n, if i == 0 { 2 } else { 1 })))
        .collect();

    // Baseline: a fresh context (cold cache) for each reconcile of a sample.
    let started = Instant::now();
    for object in objects.iter().take(args.sample) {
        reconcile(Arc::clone(object), context(&client, &writer))
            .await
            .map_err(|e| format!("baseline reconcile: {e}"))?;
    }
    let sample_time = started.elapsed();
    let baseline_ready = ready.swap(0, Ordering::Relaxed);
    if baseline_ready != args.sample {
        return Err(format!(
            "baseline: {baseline_ready} of {} Ready",
            args.sample
        ));
    }
    let per_cold = sample_time / u32::try_from(args.sample).unwrap_or(u32::MAX);
    let baseline = per_cold * u32::try_from(n).unwrap_or(u32::MAX);

    // Shared: one context for all N, as the running controller.
    let ctx = context(&client, &writer);
    let started = Instant::now();
    let first = Instant::now();
    let mut first_time = Duration::ZERO;
    for (i, object) in objects.iter().enumerate() {
        reconcile(Arc::clone(object), Arc::clone(&ctx))
            .await
            .map_err(|e| format!("reconcile: {e}"))?;
        if i == 0 {
            first_time = first.elapsed();
        }
    }
    let shared = started.elapsed();
    let shared_ready = ready.swap(0, Ordering::Relaxed);
    if shared_ready != n {
        return Err(format!("shared: {shared_ready} of {n} Ready"));
    }
    server.abort();
    let rest = (shared - first_time) / u32::try_from(n - 1).unwrap_or(u32::MAX);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# k8s-controller: one change, {n} Tenants reconciled\n"
    );
    let _ = writeln!(out, "| what | time |");
    let _ = writeln!(out, "| --- | --- |");
    let _ = writeln!(
        out,
        "| baseline: one reconcile, cold (mean of {}) | {} |",
        args.sample,
        bulkhead_bench::ms(per_cold)
    );
    let _ = writeln!(
        out,
        "| baseline: {n} reconciles (extrapolated) | {:.2} s |",
        baseline.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| shared: first reconcile (builds the snapshot) | {} |",
        bulkhead_bench::ms(first_time)
    );
    let _ = writeln!(
        out,
        "| shared: each further reconcile (mean) | {} |",
        bulkhead_bench::ms(rest)
    );
    let _ = writeln!(
        out,
        "| shared: all {n} reconciles | {:.2} s |",
        shared.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| speed-up (baseline / shared) | {} |",
        bulkhead_bench::ratio(baseline, shared)
    );
    let _ = writeln!(
        out,
        "\nEvery reconcile ended Ready=True ({n} + {}).",
        args.sample
    );
    Ok(out)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("k8s-controller: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("k8s-controller: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(report) => {
            print!("{report}");
            if let Some(path) = &args.out
                && let Err(e) = std::fs::write(path, &report)
            {
                eprintln!("k8s-controller: cannot write {path}: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("k8s-controller: {message}");
            ExitCode::FAILURE
        }
    }
}
