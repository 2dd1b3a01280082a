//! `webex-sim serve`: run the Webex simulator as a process (demos, benchmarks).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use webex_sim::{Sim, SimOptions};

const USAGE: &str = "\
webex-sim: a local stand-in for the Webex REST API (tokens, OAuth, data sources)

USAGE:
    webex-sim serve [OPTIONS]

OPTIONS:
    --addr ADDR                  listen address [default: 127.0.0.1:0]
    --access-ttl DURATION        service-app access token lifetime [default: 14d]
    --refresh-ttl DURATION       service-app refresh token lifetime [default: 90d]
    --personal-ttl DURATION      personal token lifetime (demo files) [default: 12h]
    --integration-access-ttl D   integration access token lifetime [default: 14d]
    --integration-refresh-ttl D  integration refresh token lifetime [default: 90d]
    --rotate-refresh-tokens      hand out a new refresh token on every refresh
    --orgs N                     the service app is authorized in N orgs [default: 1]
    --latency DURATION           delay every /v1 answer, e.g. 20ms [default: 0s]
    --page-size N                GET /v1/dataSources page size without max [default: 100]
    --device-interval DURATION   device grant polling interval [default: 5s]
    --device-code-ttl DURATION   how long a device code lives [default: 300s]
    --ds-minute DURATION         how long a data-source token minute lasts, to
                                 compress time in benchmarks [default: 60s]
    --init DIR                   write DIR/token-config.json (0600) and two demo data
                                 sources per org (with --orgs N > 1: serviceApp.orgs)
    --quiet                      no per-request log lines on stderr
    -h, --help                   this help

Durations: 30s, 5m, 12h, 90d (humantime syntax).
When ready, prints exactly one line on stdout:
    webex-sim listening on http://127.0.0.1:PORT/v1
Control API under http://127.0.0.1:PORT/_sim/ (see the crate docs).
";

fn parse_duration(flag: &str, v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v).map_err(|e| format!("{flag}: invalid duration {v:?}: {e}"))
}

/// A whole number >= 1.
fn parse_count(flag: &str, v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{flag}: expected a whole number >= 1, got {v:?}")),
    }
}

struct Args {
    opts: SimOptions,
    init: Option<PathBuf>,
    quiet: bool,
}

fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("serve") => {}
        Some("-h" | "--help" | "help") | None => return Ok(None),
        Some(other) => return Err(format!("unknown command {other:?} (expected `serve`)")),
    }
    let mut opts = SimOptions::default();
    let mut init = None;
    let mut quiet = false;
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().cloned().ok_or(format!("{flag} needs a value")),
            }
        };
        match flag {
            "--addr" => opts.addr = value()?,
            "--access-ttl" => opts.access_ttl = parse_duration(flag, &value()?)?,
            "--refresh-ttl" => opts.refresh_ttl = parse_duration(flag, &value()?)?,
            "--personal-ttl" => opts.personal_ttl = parse_duration(flag, &value()?)?,
            "--integration-access-ttl" => {
                opts.integration_access_ttl = parse_duration(flag, &value()?)?
            }
            "--integration-refresh-ttl" => {
                opts.integration_refresh_ttl = parse_duration(flag, &value()?)?
            }
            "--rotate-refresh-tokens" => opts.rotate_refresh_tokens = true,
            "--orgs" => {
                let n = parse_count(flag, &value()?)?;
                opts = opts.with_org_count(n);
            }
            "--latency" => opts.latency = parse_duration(flag, &value()?)?,
            "--page-size" => opts.page_size = parse_count(flag, &value()?)?,
            "--device-interval" => opts.device_interval = parse_duration(flag, &value()?)?,
            "--device-code-ttl" => opts.device_code_ttl = parse_duration(flag, &value()?)?,
            "--ds-minute" => opts.ds_minute = parse_duration(flag, &value()?)?,
            "--init" => init = Some(PathBuf::from(value()?)),
            "--quiet" | "-q" => quiet = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(Some(Args { opts, init, quiet }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("webex-sim: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let sim = match Sim::start(args.opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("webex-sim: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(dir) = &args.init {
        if let Err(e) = sim.write_demo_files(dir) {
            eprintln!(
                "webex-sim: cannot write demo files to {}: {e}",
                dir.display()
            );
            return ExitCode::from(1);
        }
        let n = sim.data_sources().len();
        eprintln!(
            "webex-sim: wrote {} and {n} demo data sources",
            dir.join("token-config.json").display()
        );
    }
    sim.set_log_requests(!args.quiet);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "webex-sim listening on {}", sim.base_url());
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::park();
    }
}
