//! Secrets from where operators keep them (`…Command`, `…File`, systemd
//! credentials, the environment) and renewed state in a file of its own,
//! so the config can be read-only.

use crate::common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

const NEW_ACCESS: &str = "SECRET-access-from-level-1-66ff";
const NEW_REFRESH: &str = "SECRET-refresh-from-level-1-77aa";
/// What the other sources hold, so a test can tell which one was used.
const FILE_SECRET: &str = "SECRET-sa-secret-from-a-file-1a2b";
const CMD_SECRET: &str = "SECRET-sa-secret-from-a-command-3c4d";
const CRED_SECRET: &str = "SECRET-sa-secret-from-a-credential-5e6f";
const ENV_SECRET: &str = "SECRET-sa-secret-from-the-env-7a8b";

/// A test env whose env file needs level 1 (expired access token), and a
/// token endpoint that answers only to `client_secret`.
async fn level1_env(client_secret: &str) -> TestEnv {
    let mut t = TestEnv::new().await;
    for s in [
        NEW_ACCESS,
        NEW_REFRESH,
        FILE_SECRET,
        CMD_SECRET,
        CRED_SECRET,
        ENV_SECRET,
    ] {
        t.secret(s);
    }
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
    Mock::given(method("POST"))
        .and(path("/v1/access_token"))
        .and(body_string_contains(
            format!("client_secret={}", urlenc(client_secret)).as_str(),
        ))
        .and(body_string_contains(
            format!("refresh_token={}", urlenc(OLD_REFRESH)).as_str(),
        ))
        .respond_with(token_response(
            NEW_ACCESS,
            1_209_600,
            Some((NEW_REFRESH, 7_776_000)),
        ))
        .mount(&t.server)
        .await;
    t
}

/// The default config with the service-app secret taken out and `extra`
/// keys added to `serviceApp`.
fn config_without_sa_secret(extra: Value) -> Value {
    let mut c = default_config(true);
    let sa = c["serviceApp"].as_object_mut().unwrap();
    sa.remove("clientSecret");
    for (k, v) in extra.as_object().unwrap() {
        sa.insert(k.clone(), v.clone());
    }
    c
}

/// `value` and a newline in `dir/name`, as an operator keeps a secret.
pub(crate) fn write_secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p
}

/// `status --json` (after `global`, with `extra_env`): the source it lists
/// for `key`, if it lists one.
pub(crate) fn listed_source(
    t: &TestEnv,
    global: &[&str],
    extra_env: &[(&str, &str)],
    key: &str,
) -> Option<String> {
    let mut c = t.cmd();
    c.args(global).args(["--json", "status"]);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    t.assert_no_secrets(&out, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["secretSources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .map(|s| s["source"].as_str().unwrap().to_string())
}

/// `status --json`'s source for `key`.
fn source_of(t: &TestEnv, extra_env: &[(&str, &str)], key: &str) -> String {
    listed_source(t, &[], extra_env, key).unwrap_or_else(|| panic!("no source for {key}"))
}

fn refresh(t: &TestEnv, extra_env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut c = t.cmd();
    c.args(args);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    t.assert_no_secrets(&out, &[]);
    out
}

#[tokio::test]
async fn a_secret_file_is_read_trimmed_and_shown_as_its_path() {
    let t = level1_env(FILE_SECRET).await;
    let file = write_secret(t.dir.path(), "sa-secret", FILE_SECRET);
    // Relative to the config's directory.
    t.write_config(&config_without_sa_secret(
        json!({"clientSecretFile": "sa-secret"}),
    ));
    let before = std::fs::read(t.config_path()).unwrap();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.env_values()["WEBEX_SERVICE_APP_ACCESS_TOKEN"], NEW_ACCESS);
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    assert_eq!(
        source_of(&t, &[], "serviceApp.clientSecret"),
        format!("file:{}", file.display())
    );
    // Human status names it too, never the value.
    let out = t.run(&["status"]);
    assert!(
        stdout(&out).contains(&format!(
            "serviceApp.clientSecret from file:{}",
            file.display()
        )),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn a_missing_or_empty_secret_file_is_exit_3_naming_key_and_file() {
    let t = level1_env(FILE_SECRET).await;
    t.write_config(&config_without_sa_secret(
        json!({"clientSecretFile": "/nonexistent/sa-secret"}),
    ));
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("serviceApp.clientSecretFile"), "{err}");
    assert!(err.contains("/nonexistent/sa-secret"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    write_secret(t.dir.path(), "empty", "");
    t.write_config(&config_without_sa_secret(
        json!({"clientSecretFile": "empty"}),
    ));
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
    assert!(
        t.requests().await.is_empty(),
        "no request after a bad source"
    );
}

#[tokio::test]
async fn a_secret_command_runs_without_a_shell_once_per_run() {
    let t = level1_env(CMD_SECRET).await;
    let file = write_secret(t.dir.path(), "vault", CMD_SECRET);
    let count = t.path("runs");
    // The argv is run as is: the `;` and `>>` reach `sh` as its script,
    // not a shell of ours; the script counts its runs.
    let script = format!(
        "echo run >> '{}'; cat '{}'",
        count.display(),
        file.display()
    );
    t.write_config(&config_without_sa_secret(json!({
        "clientSecret": "SECRET-inline-value-not-used-9999",
        "clientSecretCommand": ["sh", "-c", script],
    })));
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.env_values()["WEBEX_SERVICE_APP_ACCESS_TOKEN"], NEW_ACCESS);
    let runs = std::fs::read_to_string(&count).unwrap();
    assert_eq!(runs.lines().count(), 1, "one run of the command per run");
    assert_eq!(source_of(&t, &[], "serviceApp.clientSecret"), "command");
    // A string is not a command (it would need a shell).
    t.write_config(&config_without_sa_secret(
        json!({"clientSecretCommand": "cat /etc/secret"}),
    ));
    let out = t.run(&["status"]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("array"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_failing_slow_or_loud_command_is_exit_3_and_its_output_stays_hidden() {
    let mut t = level1_env(CMD_SECRET).await;
    let leaked = t.secret("SECRET-printed-on-stderr-by-the-helper");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!([
                "sh",
                "-c",
                format!("echo {leaked} >&2; echo {CMD_SECRET}; exit 3")
            ]),
            "exited with status 3",
        ),
        (json!(["sleep", "5"]), "did not finish"),
        (
            json!(["sh", "-c", format!("yes {CMD_SECRET}")]),
            "more than 65536 bytes",
        ),
        (json!(["/nonexistent/helper"]), "could not be started"),
        (json!(["true"]), "empty"),
    ];
    for (argv, why) in cases {
        t.write_config(&config_without_sa_secret(
            json!({"clientSecretCommand": argv}),
        ));
        for verbosity in ["-q", "-vv"] {
            let mut c = t.cmd();
            c.env("WEBEX_TOKEN_TEST_COMMAND_TIMEOUT", "500ms")
                .args([verbosity, "refresh"]);
            let out = c.output().unwrap();
            let err = stderr(&out);
            assert_eq!(code(&out), 3, "{argv}: {err}");
            assert!(err.contains("serviceApp.clientSecretCommand"), "{err}");
            assert!(err.contains(why), "{argv}: {err}");
            // The helper's stdout never shows; its stderr only as a debug
            // log, and not even then when it holds a secret we know of.
            assert!(!err.contains(CMD_SECRET), "{err}");
            if verbosity == "-q" {
                t.assert_no_secrets(&out, &[]);
            }
        }
    }
    assert!(
        t.requests().await.is_empty(),
        "no request after a bad source"
    );
}

#[tokio::test]
async fn precedence_is_command_file_credential_env_inline() {
    let t = level1_env(CMD_SECRET).await;
    let creds = t.path("credentials");
    std::fs::create_dir(&creds).unwrap();
    write_secret(&creds, "service-app-client-secret", CRED_SECRET);
    let file = write_secret(t.dir.path(), "sa-file", FILE_SECRET);
    let cmd_file = write_secret(t.dir.path(), "sa-cmd", CMD_SECRET);
    let env = [
        ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap()),
        ("WEBEX_TOKEN_SERVICE_APP_CLIENT_SECRET", ENV_SECRET),
    ];
    let mut extra = json!({
        "clientSecret": SA_SECRET,
        "clientSecretFile": file.to_str().unwrap(),
        "clientSecretCommand": ["cat", cmd_file.to_str().unwrap()],
    });
    let key = "serviceApp.clientSecret";
    // Each step removes the winner; the next one must win.
    let steps: [(&str, Option<&str>, &str); 5] = [
        ("command", Some("clientSecretCommand"), CMD_SECRET),
        ("file:", Some("clientSecretFile"), FILE_SECRET),
        ("credential", None, CRED_SECRET),
        ("env", None, ENV_SECRET),
        ("inline", None, SA_SECRET),
    ];
    let mut env_now: Vec<(&str, &str)> = env.to_vec();
    for (i, (shown, remove_after, value)) in steps.into_iter().enumerate() {
        t.write_config(&config_without_sa_secret(extra.clone()));
        assert!(
            source_of(&t, &env_now, key).starts_with(shown),
            "step {i}: expected {shown}"
        );
        // The value that won is the one sent (the mock answers only it).
        t.server.reset().await;
        Mock::given(method("POST"))
            .and(path("/v1/access_token"))
            .and(body_string_contains(
                format!("client_secret={}", urlenc(value)).as_str(),
            ))
            .respond_with(token_response(
                NEW_ACCESS,
                1_209_600,
                Some((NEW_REFRESH, 7_776_000)),
            ))
            .mount(&t.server)
            .await;
        t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
        let out = refresh(&t, &env_now, &["refresh"]);
        assert_eq!(code(&out), 0, "step {i} ({shown}): {}", stderr(&out));
        match (i, remove_after) {
            (_, Some(k)) => {
                extra.as_object_mut().unwrap().remove(k);
            }
            (2, None) => env_now.retain(|(k, _)| *k != "CREDENTIALS_DIRECTORY"),
            (3, None) => env_now.clear(),
            _ => {}
        }
    }
}

#[tokio::test]
async fn an_env_secret_is_kept_from_exec_children() {
    let t = level1_env(ENV_SECRET).await;
    t.write_config(&config_without_sa_secret(json!({})));
    let mut c = t.cmd();
    c.env("WEBEX_TOKEN_SERVICE_APP_CLIENT_SECRET", ENV_SECRET)
        .env("WEBEX_TOKEN_INTEGRATION_CLIENT_SECRET", INT_SECRET)
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            "echo \"[${WEBEX_TOKEN_SERVICE_APP_CLIENT_SECRET:-unset}/${WEBEX_TOKEN_INTEGRATION_CLIENT_SECRET:-unset}]\"",
        ]);
    let out = c.output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[unset/unset]");
    t.assert_no_secrets(&out, &[]);
    assert_eq!(
        source_of(
            &t,
            &[("WEBEX_TOKEN_SERVICE_APP_CLIENT_SECRET", ENV_SECRET)],
            "serviceApp.clientSecret"
        ),
        "env"
    );
}

/// Level 3 renews the personal token through the integration: the mocks
/// for a run whose env file is missing (level 2 mints, the old personal
/// token is rejected). Returns the renewed personal token and integration
/// refresh token.
async fn level3_mocks(t: &mut TestEnv) -> (String, String) {
    let new_pat = t.secret("SECRET-renewed-personal-into-state");
    let new_irt = t.secret("SECRET-rotated-integration-into-state");
    let access = t.secret("SECRET-access-after-state-l3");
    let sa_rt = t.secret("SECRET-sa-refresh-after-state-l3");
    t.mock_mint(
        PAT,
        ResponseTemplate::new(401).set_body_json(webex_error("token expired")),
    )
    .await;
    // The integration's refresh token works once; a second use (a run
    // that did not read the state file) is rejected.
    Mock::given(method("POST"))
        .and(path("/v1/access_token"))
        .and(body_string_contains(
            format!("refresh_token={}", urlenc(INT_REFRESH)).as_str(),
        ))
        .respond_with(token_response(
            &new_pat,
            1_209_599,
            Some((&new_irt, 7_775_999)),
        ))
        .up_to_n_times(1)
        .mount(&t.server)
        .await;
    t.mock_refresh(INT_CLIENT_ID, INT_REFRESH, oauth_error("invalid_grant"))
        .await;
    t.mock_mint(
        &new_pat,
        token_response(&access, 1_209_600, Some((&sa_rt, 7_776_000))),
    )
    .await;
    (new_pat, new_irt)
}

#[tokio::test]
async fn with_state_the_config_is_left_alone_and_the_state_is_used_next_time() {
    let mut t = TestEnv::new().await;
    let (new_pat, new_irt) = level3_mocks(&mut t).await;
    let before = std::fs::read(t.config_path()).unwrap();
    let state = t.path("state/state.json");
    std::fs::create_dir(t.path("state")).unwrap();
    let state_arg = state.to_str().unwrap();
    let out = t.run(&["--state", state_arg, "refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 3"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("saved in {state_arg}")),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read(t.config_path()).unwrap(),
        before,
        "config unchanged"
    );
    assert_eq!(mode(&state), 0o600);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(s["tokenManager"]["personalAccessToken"], new_pat.as_str());
    assert_eq!(
        s["tokenManager"]["integration"]["refreshToken"],
        new_irt.as_str()
    );
    assert_eq!(s["tokenManager"]["integration"]["clientId"], INT_CLIENT_ID);
    assert_eq!(s["webexTokenState"], 1);
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(
        !text.contains(INT_SECRET) && !text.contains(SA_SECRET),
        "{text}"
    );
    assert!(s.get("serviceApp").is_none(), "{s}");

    // The next run mints with the personal token from the state file (the
    // one in the config is rejected, the integration's old refresh token
    // too): the state is read, the config's tokens are not used again.
    let out = t.run(&["--state", state_arg, "refresh", "--mint"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    let mut c = t.cmd();
    c.env("WEBEX_TOKEN_STATE", state_arg)
        .args(["--json", "status"]);
    let out = c.output().unwrap();
    t.assert_no_secrets(&out, &[]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stateFile"], state_arg);
    assert_eq!(
        v["credentials"]["personalAccessToken"]["fingerprint"],
        webex_token::secret::fingerprint_str(&new_pat)
    );
    // Without the state file, the config's own (now dead) tokens are what
    // is left: a run that forgot --state fails rather than silently
    // writing into the config.
    let out = t.run(&["refresh", "--mint"]);
    assert_ne!(code(&out), 0);
}

/// Root writes through file modes, so a read-only config would not be
/// read-only to it: as root, the service runs as nobody instead.
fn as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The layout systemd gives a service: the config (0444) in a directory
/// it cannot write, the env file in a writable one, and optionally
/// `$STATE_DIRECTORY` and `$CREDENTIALS_DIRECTORY`.
struct Service {
    etc: PathBuf,
    work: PathBuf,
    state: PathBuf,
    creds: PathBuf,
}

fn service_layout(t: &TestEnv, config: &Value) -> Service {
    use std::os::unix::fs::PermissionsExt;
    let root = t.dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = Service {
        etc: root.join("etc"),
        work: root.join("work"),
        state: root.join("state"),
        creds: root.join("creds"),
    };
    for d in [&s.etc, &s.work, &s.state, &s.creds] {
        std::fs::create_dir(d).unwrap();
    }
    let cfg = s.etc.join("token-config.json");
    std::fs::write(&cfg, serde_json::to_string_pretty(config).unwrap()).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&s.etc, std::fs::Permissions::from_mode(0o555)).unwrap();
    // The service user owns its writable directories (root: nobody).
    let uid = if as_root() {
        65534
    } else {
        rustix::process::geteuid().as_raw()
    };
    for d in [&s.work, &s.state, &s.creds] {
        std::os::unix::fs::chown(d, Some(uid), None).unwrap();
    }
    s
}

/// The binary as the service would run it: as nobody when the tests run
/// as root (`setpriv`), in `work`, with the config in `etc`.
fn service_cmd(t: &TestEnv, s: &Service) -> std::process::Command {
    let bin = assert_cmd::cargo::cargo_bin("webex-token");
    let mut c = if as_root() {
        let mut c = scrubbed("setpriv", &s.work);
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin);
        c
    } else {
        scrubbed(bin, &s.work)
    };
    c.env("WEBEX_API_BASE_URL", t.base())
        .env("HOME", &s.work)
        .arg("--config")
        .arg(s.etc.join("token-config.json"))
        .arg("--env-file")
        .arg(s.work.join(".env"));
    c
}

#[tokio::test]
async fn a_read_only_config_without_state_is_exit_3_before_any_request() {
    let mut t = TestEnv::new().await;
    let _ = level3_mocks(&mut t).await;
    let s = service_layout(&t, &default_config(true));
    let before = std::fs::read(s.etc.join("token-config.json")).unwrap();
    for args in [&["refresh"][..], &["token"], &["setup-oauth", "--device"]] {
        let out = service_cmd(&t, &s).args(args).output().unwrap();
        t.assert_no_secrets(&out, &[]);
        let err = stderr(&out);
        assert_eq!(code(&out), 3, "{args:?}: {err}");
        assert!(err.contains("read-only"), "{err}");
        assert!(err.contains("--state"), "{err}");
    }
    assert!(t.requests().await.is_empty(), "no request was made");
    assert_eq!(
        std::fs::read(s.etc.join("token-config.json")).unwrap(),
        before
    );
    // `status` only reads: it works, and says there is no state file.
    let out = service_cmd(&t, &s).args(["status"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[tokio::test]
async fn under_systemd_credentials_and_state_directory_a_read_only_config_works() {
    let mut t = TestEnv::new().await;
    let (new_pat, _) = level3_mocks(&mut t).await;
    // The config holds no client secret at all; systemd hands them over.
    let mut cfg = default_config(true);
    cfg["serviceApp"]
        .as_object_mut()
        .unwrap()
        .remove("clientSecret");
    cfg["tokenManager"]["integration"]
        .as_object_mut()
        .unwrap()
        .remove("clientSecret");
    let s = service_layout(&t, &cfg);
    write_secret(&s.creds, "service-app-client-secret", SA_SECRET);
    write_secret(&s.creds, "integration-client-secret", INT_SECRET);
    let before = std::fs::read(s.etc.join("token-config.json")).unwrap();
    let run = |args: &[&str]| {
        let out = service_cmd(&t, &s)
            .env("CREDENTIALS_DIRECTORY", &s.creds)
            .env("STATE_DIRECTORY", &s.state)
            .arg("-vv")
            .args(args)
            .output()
            .unwrap();
        t.assert_no_secrets(&out, &[]);
        out
    };
    let out = run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 3"), "{}", stdout(&out));
    let state = s.state.join("state.json");
    let st: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(st["tokenManager"]["personalAccessToken"], new_pat.as_str());
    assert_eq!(mode(&state), 0o600);
    assert_eq!(
        std::fs::read(s.etc.join("token-config.json")).unwrap(),
        before
    );
    assert_eq!(mode(&s.etc.join("token-config.json")), 0o444);
    // Nothing new beside the config (no lock, no temp file).
    let beside: Vec<_> = std::fs::read_dir(&s.etc).unwrap().collect();
    assert_eq!(beside.len(), 1);
    // The audit log (beside the env file) names no secret either.
    let audit = std::fs::read_to_string(s.work.join(".env.audit.jsonl")).unwrap();
    assert!(audit.contains("\"level\""), "{audit}");
    for secret in &t.secrets {
        assert!(
            !audit.contains(secret.as_str()),
            "{secret} in the audit log"
        );
    }

    let out = run(&["--json", "status"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stateFile"], state.to_str().unwrap());
    let sources: Vec<(String, String)> = v["secretSources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap().to_string(),
                s["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        sources.contains(&("serviceApp.clientSecret".into(), "credential".into())),
        "{sources:?}"
    );
    assert!(
        sources.contains(&(
            "tokenManager.integration.clientSecret".into(),
            "credential".into()
        )),
        "{sources:?}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("service-app-client-secret"),
        "credential names stay out: {text}"
    );
}

#[tokio::test]
async fn the_state_file_cannot_be_the_config() {
    let t = TestEnv::new().await;
    let before = std::fs::read(t.config_path()).unwrap();
    let cfg = t.config_path();
    let out = t.run(&["--state", cfg.to_str().unwrap(), "refresh"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--state"), "{}", stderr(&out));
    assert!(t.requests().await.is_empty());
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
}

#[tokio::test]
async fn a_secret_quoted_by_a_server_is_redacted_even_when_not_sent() {
    let t = TestEnv::new().await;
    let file = write_secret(t.dir.path(), "int-secret", INT_SECRET);
    let mut cfg = default_config(true);
    cfg["tokenManager"]["integration"]["clientSecret"] = json!(null);
    cfg["tokenManager"]["integration"]["clientSecretFile"] = json!(file.to_str().unwrap());
    t.write_config(&cfg);
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
    // Level 1 carries only the service app's secret; the answer quotes the
    // integration's (read from a file), which must not reach any output.
    Mock::given(method("POST"))
        .and(path("/v1/access_token"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(webex_error(&format!(
                "upstream said: client {INT_SECRET} is misconfigured"
            ))),
        )
        .mount(&t.server)
        .await;
    let out = t.run(&["--json", "refresh"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("[redacted"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_state_file_in_a_missing_directory_is_exit_3_before_any_request() {
    let t = TestEnv::new().await;
    let state = t.path("no-such-dir/state.json");
    let out = t.run(&["--state", state.to_str().unwrap(), "refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-dir"), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(t.requests().await.is_empty());
}

#[tokio::test]
async fn a_bad_credential_is_exit_3_naming_the_key_not_the_credential() {
    let t = level1_env(CRED_SECRET).await;
    let creds = t.path("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("service-app-client-secret"), "two\nlines\n").unwrap();
    t.write_config(&config_without_sa_secret(json!({})));
    let out = refresh(
        &t,
        &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())],
        &["refresh"],
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{err}");
    assert!(err.contains("`serviceApp.clientSecret`"), "{err}");
    assert!(err.contains("systemd credential"), "{err}");
    assert!(!err.contains("service-app-client-secret"), "{err}");
    assert!(!err.contains("lines"), "no content in the message: {err}");
    assert!(t.requests().await.is_empty());
}

#[tokio::test]
async fn another_programs_state_json_is_neither_read_nor_overwritten() {
    let t = TestEnv::new().await;
    let dir = t.path("shared-state");
    std::fs::create_dir(&dir).unwrap();
    let theirs = r#"{"tokenManager": {"personalAccessToken": "not-ours"}, "app": 1}"#;
    std::fs::write(dir.join("state.json"), theirs).unwrap();
    let mut c = t.cmd();
    c.env("STATE_DIRECTORY", &dir).args(["refresh"]);
    let out = c.output().unwrap();
    t.assert_no_secrets(&out, &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a webex-token state file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("state.json")).unwrap(),
        theirs
    );
    assert!(t.requests().await.is_empty());
}
