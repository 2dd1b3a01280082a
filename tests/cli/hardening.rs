//! Unattended and under fire: overlap, kills, odd bytes, odd servers.

use crate::common::*;
use std::process::{Command, Stdio};
use std::time::Duration;
use wiremock::ResponseTemplate;

#[tokio::test]
async fn twenty_overlapping_runs_make_one_refresh() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-the-one-refresh");
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-60)),
        Some(OLD_REFRESH),
    ));
    // A slow answer widens the window in which the others pile up.
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 1_209_600, Some((OLD_REFRESH, 7_776_000)))
            .set_delay(Duration::from_millis(300)),
    )
    .await;
    // A straggler that starts after the write checks the new token.
    t.mock_validate(&new, 200).await;
    let children: Vec<_> = (0..20)
        .map(|_| {
            let mut c: Command = t.std_cmd();
            c.args(["-v", "refresh"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        t.assert_no_secrets(&out, &[]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    assert_eq!(
        t.count("POST", "/v1/access_token").await,
        1,
        "exactly one refresh"
    );
    // Runs that waited for the lock trust the token the first one wrote; a
    // straggler that started after the write may validate it (a GET), which
    // is fine. What must never happen is a second mint.
    assert_eq!(
        t.count("POST", &format!("/v1/applications/{APP_ID}/token"))
            .await,
        0
    );
    let v = t.env_values();
    assert_eq!(v["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
    assert_eq!(v.len(), 4);
}

#[tokio::test]
async fn killed_runs_never_leave_a_partial_file() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-crash-new-access");
    let new_rt = t.secret("SECRET-crash-new-refresh");
    let original = format!(
        "# keep\n{}OTHER=1\n",
        env_with(OLD_ACCESS, Some(&in_secs(-60)), Some(OLD_REFRESH))
    );
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 1_209_600, Some((&new_rt, 7_776_000)))
            .set_delay(Duration::from_millis(15)),
    )
    .await;
    t.mock_refresh(
        SA_CLIENT_ID,
        &new_rt,
        token_response(&new, 1_209_600, Some((&new_rt, 7_776_000)))
            .set_delay(Duration::from_millis(15)),
    )
    .await;
    // CRASH_RUNS=500 cargo test --test cli killed_runs  for a longer soak.
    let runs: usize = std::env::var("CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut killed = 0;
    for i in 0..runs {
        if i % 2 == 0 {
            t.write_env(&original);
        }
        let mut c: Command = t.std_cmd();
        c.args(["refresh", "--force", "--audit-log", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        // Kill somewhere between start-up and well after the write.
        std::thread::sleep(Duration::from_millis(
            (i * 7 % 60) as u64 + (i / 60 % 3) as u64,
        ));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let text = t.read_env();
        let values = t.env_values();
        let rt = &values["WEBEX_SERVICE_APP_REFRESH_TOKEN"];
        assert!(
            rt == OLD_REFRESH || *rt == new_rt,
            "run {i}: refresh token lost:\n{text}"
        );
        assert!(
            text.starts_with("# keep\n") && text.contains("OTHER=1\n"),
            "run {i}:\n{text}"
        );
        // No temp files left behind that could be mistaken for the real one
        // are a nicety; the real file is what matters.
    }
    assert!(
        killed > runs / 8,
        "the test must really kill runs mid-flight ({killed} of {runs})"
    );
    eprintln!("crash test: {runs} runs, {killed} killed mid-flight, 0 partial files");
}

#[tokio::test]
async fn non_utf8_env_file_is_an_input_error() {
    let t = TestEnv::new().await;
    let bytes = b"A=1\nWEBEX_SERVICE_APP_ACCESS_TOKEN=\xff\xfe\n".to_vec();
    std::fs::write(t.env_path(), &bytes).unwrap();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.env_path()).unwrap(), bytes);
}

#[tokio::test]
async fn crlf_env_file_stays_crlf() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-crlf");
    t.write_env(&format!(
        "# windows\r\nOTHER=1\r\nWEBEX_SERVICE_APP_ACCESS_TOKEN={OLD_ACCESS}\r\nWEBEX_SERVICE_APP_REFRESH_TOKEN={OLD_REFRESH}\r\n"
    ));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 3600 * 5, None),
    )
    .await;
    t.mock_validate(OLD_ACCESS, 401).await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after = t.read_env();
    assert!(after.starts_with("# windows\r\nOTHER=1\r\n"), "{after:?}");
    assert!(
        !after.replace("\r\n", "").contains('\n'),
        "all lines CRLF: {after:?}"
    );
    assert_eq!(t.env_values()["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
}

#[tokio::test]
async fn html_from_a_proxy_is_transient() {
    let t = TestEnv::new().await;
    let env = env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH));
    t.write_env(&env);
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        ResponseTemplate::new(200).set_body_raw("<html>captive portal</html>", "text/html"),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not the expected JSON"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.read_env(), env);
}

#[tokio::test]
async fn huge_body_is_refused() {
    let t = TestEnv::new().await;
    let env = env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH));
    t.write_env(&env);
    let huge = format!("{{\"access_token\":\"{}\"}}", "A".repeat(2 * 1024 * 1024));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        ResponseTemplate::new(200).set_body_raw(huge, "application/json"),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("larger than"), "{}", stderr(&out));
    assert_eq!(t.read_env(), env);
}

#[tokio::test]
async fn in_place_write_mode_keeps_a_private_backup() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-in-place");
    let env = env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH));
    t.write_env(&env);
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 3600 * 5, None),
    )
    .await;
    let ino_before = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(t.env_path()).unwrap());
    let out = t.run(&["refresh", "--write-mode", "in-place"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ino_after = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(t.env_path()).unwrap());
    assert_eq!(ino_before, ino_after, "same inode: written in place");
    assert_eq!(t.env_values()["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
    let backup = t.path(".env.webex-token.bak");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), env);
    assert_eq!(mode(&backup), 0o600);
}

#[tokio::test]
async fn rotated_integration_refresh_token_is_saved_even_if_level2_then_fails() {
    let mut t = TestEnv::new().await;
    let new_pat = t.secret("SECRET-rotated-pat");
    let new_int = t.secret("SECRET-rotated-int-rt");
    t.mock_mint(PAT, ResponseTemplate::new(401)).await;
    t.mock_refresh(
        INT_CLIENT_ID,
        INT_REFRESH,
        token_response(&new_pat, 1000, Some((&new_int, 9000))),
    )
    .await;
    t.mock_mint(
        &new_pat,
        ResponseTemplate::new(403).set_body_json(webex_error("not authorized")),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let c = t.read_config();
    assert_eq!(
        c["tokenManager"]["integration"]["refreshToken"],
        new_int.as_str()
    );
    assert_eq!(c["tokenManager"]["personalAccessToken"], new_pat.as_str());
}

/// A single-file bind mount (Docker `-v host.env:/app/.env`) cannot be
/// replaced by rename: EBUSY. Reproduced for real in a private mount
/// namespace (needs root and `unshare`; skipped with a message otherwise).
#[tokio::test]
async fn single_file_bind_mount_is_explained_and_in_place_works() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-bind-mount");
    let host = t.path("host.env");
    let original = env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH));
    std::fs::write(&host, &original).unwrap();
    std::fs::write(t.env_path(), "").unwrap();
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 86_400, None),
    )
    .await;
    let bin = assert_cmd::cargo::cargo_bin("webex-token");
    let run = |mode: &str| {
        let script = format!(
            "mount --bind '{}' '{}' && exec '{}' refresh --write-mode {mode}",
            host.display(),
            t.env_path().display(),
            bin.display()
        );
        scrubbed("unshare", t.dir.path())
            .args(["-m", "sh", "-c", &script])
            .env("WEBEX_API_BASE_URL", t.base())
            .output()
    };
    let probe = Command::new("unshare").args(["-m", "true"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("unshare -m is not available here: bind-mount behaviour not checked");
        return;
    }
    let out = run("atomic").unwrap();
    t.assert_no_secrets(&out, &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--write-mode in-place"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&host).unwrap(),
        original,
        "host file untouched"
    );
    let leftovers: Vec<_> = std::fs::read_dir(t.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    // The new tokens were not lost: they wait in a recovery file.
    assert!(err.contains(".recovered-"), "{err}");

    let out = run("in-place").unwrap();
    t.assert_no_secrets(&out, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let host_after = std::fs::read_to_string(&host).unwrap();
    assert!(host_after.contains(&new), "written through the bind mount");
    assert!(host_after.contains(OLD_REFRESH));
}
