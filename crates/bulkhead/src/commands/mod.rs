//! One module per group of verbs; each turns parsed flags into library calls.

pub mod apply;
mod audit;
mod doctor;
mod elevate;
mod get;
mod history;
pub mod host;
mod k8s;
mod lifecycle;
mod logs;
pub mod net;
mod serve;
pub(crate) mod token;
mod validate;
mod verify;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::context::{EXIT_OK, Outcome};
use crate::output;

pub fn run(cli: Cli) -> Outcome {
    let global = &cli.global;
    match cli.command {
        Command::Validate(files) => validate::validate(global, &files.paths),
        Command::Plan {
            files,
            detailed_exitcode,
        } => apply::plan(global, &files.paths, detailed_exitcode),
        Command::Apply {
            files,
            message,
            record_only,
            verify,
            fail_after,
        } => {
            let code = apply::apply(global, &files.paths, &message, record_only, fail_after)?;
            if verify && code == crate::context::EXIT_OK {
                verify::verify(global, &[], None, None, None, false)
            } else {
                Ok(code)
            }
        }
        Command::Verify {
            tenants,
            only,
            sample,
            format,
            all_rows,
        } => verify::verify(
            global,
            &tenants,
            only.as_deref(),
            sample,
            format.as_deref(),
            all_rows,
        ),
        Command::Run {
            tenant,
            workload,
            command,
        } => lifecycle::run(global, &tenant, workload.as_deref(), &command),
        Command::Exec { target, command } => match target.split_once('/') {
            Some((tenant, workload)) => lifecycle::run(global, tenant, Some(workload), &command),
            None => Err(crate::context::Failure::Other(anyhow::anyhow!(
                "{target:?} does not name a workload (expected TENANT/WORKLOAD)"
            ))),
        },
        Command::Suspend { tenant, evict_key } => lifecycle::suspend(global, &tenant, evict_key),
        Command::Resume { tenant } => lifecycle::resume(global, &tenant),
        Command::Delete { tenant, yes } => lifecycle::delete(global, &tenant, yes),
        Command::Rollback { revision } => lifecycle::rollback(global, revision),
        Command::Gc { all } => lifecycle::gc(global, all),
        Command::Get { kind, name, files } => get::get(global, kind, name.as_deref(), &files),
        Command::Describe { kind, name, files } => get::describe(global, kind, &name, &files),
        Command::History { action } => history::history(global, action),
        Command::Audit { action } => audit::audit(global, action),
        Command::Schema { kind } => {
            let schema = bulkhead_spec::schema::schema_for(kind.as_str())
                .ok_or_else(|| anyhow::anyhow!("no schema for {}", kind.as_str()))?;
            // A schema is JSON by nature; -o yaml still honoured.
            let format = match global.output {
                crate::cli::Output::Yaml => crate::cli::Output::Yaml,
                _ => crate::cli::Output::Json,
            };
            output::emit(format, &schema, String::new)?;
            Ok(EXIT_OK)
        }
        Command::K8s { action } => k8s::k8s(global, action),
        Command::Net { action } => net::net(global, action),
        Command::Doctor { strict } => doctor::doctor(global, strict),
        Command::Serve {
            socket,
            tls_listen,
            tls_cert,
            tls_key,
            reconcile_interval,
            backoff_base,
            backoff_max,
            log_file_bytes,
            denial_limit,
            denial_window,
            denial_block,
        } => {
            let seconds = |s: f64| std::time::Duration::from_secs_f64(s.clamp(0.01, 86_400.0));
            let tls = match (tls_listen, tls_cert, tls_key) {
                (Some(listen), Some(cert), Some(key)) => {
                    Some(bulkhead_daemon::TlsConfig { listen, cert, key })
                }
                _ => None,
            };
            serve::serve(
                global,
                serve::ServeOptions {
                    socket,
                    tls,
                    reconcile_interval: seconds(reconcile_interval),
                    backoff_base: seconds(backoff_base),
                    backoff_max: seconds(backoff_max),
                    log_file_bytes,
                    denial_limit: bulkhead_daemon::throttle::DenialLimit {
                        max_denials: denial_limit,
                        window: seconds(denial_window),
                        block: seconds(denial_block),
                    },
                },
            )
        }
        Command::Token { action } => token::token(global, action),
        Command::Elevate { token, action } => elevate::elevate(global, token, action),
        Command::Logs {
            target,
            tail,
            follow,
        } => logs::logs(global, &target, tail, follow),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "bulkhead", &mut std::io::stdout());
            Ok(EXIT_OK)
        }
    }
}
