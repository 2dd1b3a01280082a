//! Static secrets from where operators keep them: a `…Command` (an argv run
//! without a shell: `pass`, `op read`, `vault kv get`), a `…File` (a
//! Kubernetes Secret mount, a file only the service user can read), a
//! systemd credential (`$CREDENTIALS_DIRECTORY/<name>`, from
//! `LoadCredential=`/`LoadCredentialEncrypted=`), an environment variable,
//! or the value written in the config as before.
//!
//! Precedence, first present wins: command, file, credential, environment,
//! inline. Several sources at once are never an error. A source that is
//! present but fails (the file is missing or empty, the command fails,
//! times out or prints too much) is an error naming the key and the
//! source, never the value. Whatever is read is wrapped at once and
//! remembered for redaction (by [`crate::secret::secret`]).
//!
//! This module knows nothing of the config's layout: the caller names the
//! key and the sources it found beside it.

use crate::names::{ENV_CREDENTIALS_DIRECTORY, ENV_TEST_COMMAND_TIMEOUT};
use crate::secret::{SecretString, secret};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Largest secret read from a file, credential or command: 64 KiB (a
/// client secret is 64 characters; anything near this is the wrong file).
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Longest a `…Command` may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Most of a command's stderr kept for a debug log.
const MAX_STDERR_BYTES: u64 = 4 * 1024;

/// Where a secret came from, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A `…Command` key.
    Command,
    /// A `…File` key: the file's path.
    File(PathBuf),
    /// A systemd credential of this name.
    Credential(String),
    /// An environment variable of this name.
    Env(String),
    /// The value written in the config file.
    Inline,
}

impl fmt::Display for Origin {
    /// `command`, `file:PATH`, `credential`, `env`, `inline`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Command => f.write_str("command"),
            Origin::File(p) => write!(f, "file:{}", p.display()),
            Origin::Credential(_) => f.write_str("credential"),
            Origin::Env(_) => f.write_str("env"),
            Origin::Inline => f.write_str("inline"),
        }
    }
}

/// The sources of one secret besides its inline value.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The dotted key of the inline value, e.g. `serviceApp.clientSecret`.
    pub key: String,
    /// `…Command`: the argv (non-empty), and the key it was written under.
    pub command: Option<(String, Vec<String>)>,
    /// `…File`: the path (absolute), and the key it was written under.
    pub file: Option<(String, PathBuf)>,
    /// The systemd credential name to look for.
    pub credential: Option<&'static str>,
    /// The environment variable to look at.
    pub env: Option<&'static str>,
}

/// A present source that failed. Never holds the value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{key}` could not be read from {from}: {why}")]
pub struct SourceError {
    /// The secret's dotted key.
    pub key: String,
    /// The source, e.g. "`serviceApp.clientSecretFile` (/run/secrets/x)".
    pub from: String,
    pub why: String,
}

impl Sources {
    /// The secret from the first source present, or `None` when none of
    /// them is (the caller then uses the inline value).
    pub fn resolve(&self) -> Result<Option<(SecretString, Origin)>, SourceError> {
        let fail = |from: String, why: String| SourceError {
            key: self.key.clone(),
            from,
            why,
        };
        if let Some((key, argv)) = &self.command {
            let program = argv.first().map(String::as_str).unwrap_or_default();
            let from = format!("`{key}` (`{program}`)");
            let value = run_command(argv, command_timeout()).map_err(|why| fail(from, why))?;
            return Ok(Some((value, Origin::Command)));
        }
        if let Some((key, path)) = &self.file {
            let from = format!("`{key}` ({})", path.display());
            let value = read_secret_file(path).map_err(|why| fail(from, why))?;
            return Ok(Some((value, Origin::File(path.clone()))));
        }
        if let Some(name) = self.credential
            && let Some(path) = credential_path(name)
        {
            // (Named by what it is for, not by its credential name: those
            // stay out of messages.)
            let from = "its systemd credential (in $CREDENTIALS_DIRECTORY)".to_string();
            let value = read_secret_file(&path).map_err(|why| fail(from, why))?;
            return Ok(Some((value, Origin::Credential(name.to_string()))));
        }
        if let Some(var) = self.env
            && let Some(raw) = std::env::var_os(var).filter(|v| !v.is_empty())
        {
            let from = format!("the environment variable {var}");
            let text = raw
                .into_string()
                .map_err(|_| fail(from.clone(), "is not UTF-8".into()))?;
            let value = checked(&text).map_err(|why| fail(from, why))?;
            return Ok(Some((value, Origin::Env(var.to_string()))));
        }
        Ok(None)
    }
}

/// `$CREDENTIALS_DIRECTORY/<name>` when systemd set the directory and the
/// credential is in it.
pub fn credential_path(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(ENV_CREDENTIALS_DIRECTORY).filter(|d| !d.is_empty())?;
    let path = Path::new(&dir).join(name);
    std::fs::symlink_metadata(&path).is_ok().then_some(path)
}

/// The value as read, trimmed (a trailing newline is what `echo` and
/// editors leave) and checked: not empty, no whitespace or control
/// characters inside (a multi-line file is not one secret).
fn checked(text: &str) -> Result<SecretString, String> {
    let v = text.trim();
    if v.is_empty() {
        return Err("it is empty".into());
    }
    if v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(
            "it holds whitespace or control characters inside (more than one line?)".into(),
        );
    }
    // `secret` also puts it on the redaction list.
    Ok(secret(v))
}

/// Reads a secret file: a regular file (a symlink to one is fine, as
/// Kubernetes mounts them), opened without blocking (a FIFO swapped in is
/// refused, not waited on), at most [`MAX_SECRET_BYTES`].
pub fn read_secret_file(path: &Path) -> Result<SecretString, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "the file does not exist".to_string(),
        _ => format!("the file could not be read: {e}"),
    })?;
    let regular = |m: &std::fs::Metadata| {
        if m.is_file() {
            Ok(())
        } else {
            Err("it is not a regular file".to_string())
        }
    };
    regular(&meta)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts
        .open(path)
        .map_err(|e| format!("the file could not be read: {e}"))?;
    regular(&file.metadata().map_err(|e| e.to_string())?)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("the file could not be read: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!(
            "the file is larger than {MAX_SECRET_BYTES} bytes (is it the right file?)"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())?;
    checked(&text)
}

fn command_timeout() -> Duration {
    std::env::var(ENV_TEST_COMMAND_TIMEOUT)
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(COMMAND_TIMEOUT)
}

/// What each `…Command` printed, by argv, so a run that reads the config
/// several times (per org, again under the lock) asks a password manager
/// once, not once per read: a command may prompt, cost a Vault login, or
/// be rate-limited. Process-wide for that reason; only successes are kept.
static COMMAND_OUTPUTS: std::sync::Mutex<Vec<(Vec<String>, SecretString)>> =
    std::sync::Mutex::new(Vec::new());

/// Runs `argv` without a shell, stdin closed, in a process group of its
/// own; its stdout (trimmed) is the secret. It must exit 0 within
/// `timeout` and print at most [`MAX_SECRET_BYTES`]; otherwise the whole
/// group is killed. Its stderr goes to the debug log only (`-v`), with the
/// value redacted if it appears there.
fn run_command(argv: &[String], timeout: Duration) -> Result<SecretString, String> {
    use wait_timeout::ChildExt;
    let Some((program, args)) = argv.split_first() else {
        return Err("the command is empty".into());
    };
    {
        let done = COMMAND_OUTPUTS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, v)) = done.iter().find(|(a, _)| a == argv) {
            return Ok(v.clone());
        }
    }
    let mut c = std::process::Command::new(program);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        c.process_group(0);
    }
    let mut child = c
        .spawn()
        .map_err(|e| format!("the command could not be started: {e}"))?;
    let out = capped_reader(child.stdout.take(), MAX_SECRET_BYTES + 1);
    let err = capped_reader(child.stderr.take(), MAX_STDERR_BYTES);
    let kill_group = |child: &mut std::process::Child| {
        // The group this child leads (it is not reaped yet, so its id is
        // still its own): what it started goes too.
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    };
    let status = match child.wait_timeout(timeout) {
        Ok(Some(status)) => Some(status),
        Ok(None) => {
            kill_group(&mut child);
            None
        }
        Err(e) => {
            kill_group(&mut child);
            return Err(format!("waiting for the command failed: {e}"));
        }
    };
    // The readers end when the group is gone; a grandchild that left the
    // group and kept the pipe open is not waited for.
    let collect = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default()
    };
    let stdout = collect(out);
    let stderr = collect(err);
    let stdout_text = String::from_utf8_lossy(&stdout).into_owned();
    if !stderr.is_empty() {
        let mut shown = crate::secret::printable(&String::from_utf8_lossy(&stderr));
        let value = stdout_text.trim();
        if value.len() >= 4 {
            shown = shown.replace(value, "[redacted]");
        }
        tracing::debug!("`{program}` (secret command) wrote on stderr: {shown}");
    }
    if stdout.len() as u64 > MAX_SECRET_BYTES {
        // (Past the cap the pipe was closed: the command got EPIPE, or was
        // stopped at the time-out.)
        return Err(format!(
            "the command printed more than {MAX_SECRET_BYTES} bytes (is it the right command?)"
        ));
    }
    let Some(status) = status else {
        return Err(format!(
            "the command did not finish within {}s and was stopped",
            timeout.as_secs_f32()
        ));
    };
    if !status.success() {
        return Err(match status.code() {
            Some(code) => {
                format!("the command exited with status {code} (run with -v to see its stderr)")
            }
            None => "the command was ended by a signal".into(),
        });
    }
    let value = checked(&stdout_text).map_err(|why| format!("its output: {why}"))?;
    COMMAND_OUTPUTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((argv.to_vec(), value.clone()));
    Ok(value)
}

/// Reads up to `cap` bytes of a pipe on a thread of its own (so a chatty
/// stderr cannot block the command while stdout is read) and hands them
/// over when the pipe closes or the cap is reached; then the pipe is
/// dropped, so a command printing without end gets EPIPE.
fn capped_reader<R: Read + Send + 'static>(
    pipe: Option<R>,
    cap: u64,
) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = pipe {
            let _ = p.take(cap).read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn a_command_prints_the_secret() {
        let v = run_command(&sh("printf 'abc-secret-123\\n'"), COMMAND_TIMEOUT).unwrap();
        assert_eq!(
            crate::secret::fingerprint(&v),
            crate::secret::fingerprint_str("abc-secret-123")
        );
    }

    #[test]
    fn a_failing_slow_or_loud_command_is_refused() {
        let e = run_command(&sh("echo nope >&2; exit 7"), COMMAND_TIMEOUT).unwrap_err();
        assert!(e.contains("status 7"), "{e}");
        let e = run_command(&sh("sleep 5; echo late"), Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        let e = run_command(&sh("yes x"), COMMAND_TIMEOUT).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        let e = run_command(&sh("true"), COMMAND_TIMEOUT).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = run_command(&["/nonexistent/program".to_string()], COMMAND_TIMEOUT).unwrap_err();
        assert!(e.contains("could not be started"), "{e}");
    }

    #[test]
    fn files_are_trimmed_capped_and_regular() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "file-secret-value\n").unwrap();
        let v = read_secret_file(&p).unwrap();
        assert_eq!(
            crate::secret::fingerprint(&v),
            crate::secret::fingerprint_str("file-secret-value")
        );
        std::fs::write(&p, "two\nlines\n").unwrap();
        assert!(read_secret_file(&p).unwrap_err().contains("inside"));
        std::fs::write(&p, "\n").unwrap();
        assert!(read_secret_file(&p).unwrap_err().contains("empty"));
        std::fs::write(&p, vec![b'a'; MAX_SECRET_BYTES as usize + 1]).unwrap();
        assert!(read_secret_file(&p).unwrap_err().contains("larger"));
        assert!(
            read_secret_file(dir.path())
                .unwrap_err()
                .contains("regular")
        );
        assert!(
            read_secret_file(&dir.path().join("nope"))
                .unwrap_err()
                .contains("does not exist")
        );
    }

    #[test]
    fn the_first_present_source_wins_and_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "from-the-file-1\n").unwrap();
        let s = Sources {
            key: "serviceApp.clientSecret".into(),
            command: Some((
                "serviceApp.clientSecretCommand".into(),
                sh("echo from-the-command-1"),
            )),
            file: Some(("serviceApp.clientSecretFile".into(), p.clone())),
            ..Sources::default()
        };
        let (v, o) = s.resolve().unwrap().unwrap();
        assert_eq!(o, Origin::Command);
        assert_eq!(
            crate::secret::fingerprint(&v),
            crate::secret::fingerprint_str("from-the-command-1")
        );
        let s = Sources { command: None, ..s };
        let (_, o) = s.resolve().unwrap().unwrap();
        assert_eq!(o.to_string(), format!("file:{}", p.display()));
        let s = Sources { file: None, ..s };
        assert!(s.resolve().unwrap().is_none());
        let missing = Sources {
            file: Some((
                "serviceApp.clientSecretFile".into(),
                dir.path().join("gone"),
            )),
            ..s
        };
        let e = missing.resolve().unwrap_err();
        assert!(e.to_string().contains("`serviceApp.clientSecret`"), "{e}");
        assert!(e.to_string().contains("serviceApp.clientSecretFile"), "{e}");
    }
}
