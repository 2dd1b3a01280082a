//! A real etcd cluster on loopback for the etcd-store tests.
//!
//! `EtcdCluster::start(3)` runs three `etcd` processes on 127.0.0.1, each
//! with its own free client and peer port and its own data dir in a temp dir,
//! and returns once every member answers `/health`. Tests point the binary at
//! it with `--store <cluster.url("prefix")>`, look at what it wrote with
//! `cluster.etcdctl(&["get", "--prefix", ...])`, and break it with
//! `kill(i)`, `stop_quorum()` and `restart(i)`. Dropping the cluster kills
//! every process it started (by pid) and removes the temp dir.
//!
//! Needs `etcd` and `etcdctl` (Debian: `apt-get install etcd-server
//! etcd-client`). Without them the tests fail with that hint, unless
//! `WEBEX_TOKEN_SKIP_ETCD=1` is set: then `EtcdCluster::available()` is false
//! and `EtcdCluster::start_or_skip` returns `None`, so a test can return early.
//! In CI (`CI=true`) nothing is skipped.
//!
//! ```ignore
//! let Some(mut cluster) = EtcdCluster::start_or_skip(3) else { return };
//! let url = cluster.url("fleet-a"); // etcd://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/fleet-a
//! cluster.kill(0);                   // SIGKILL member 0; the other two keep quorum
//! cluster.restart(0);                // same ports and data dir; waits until it is healthy
//! ```

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Set to `1` to skip the etcd tests where etcd is not installed (not in CI).
pub const SKIP_VAR: &str = "WEBEX_TOKEN_SKIP_ETCD";
/// How long a start or restart may take before the harness gives up.
const HEALTH_DEADLINE: Duration = Duration::from_secs(20);
/// Whole-cluster starts with fresh ports, for when a picked port was taken
/// by someone else between picking and etcd binding it.
const START_ATTEMPTS: usize = 5;
/// Log lines per member shown when something fails.
const LOG_TAIL: usize = 40;

/// A running etcd cluster on 127.0.0.1. See the module docs.
pub struct EtcdCluster {
    members: Vec<Member>,
    etcd: PathBuf,
    etcdctl: PathBuf,
    /// The `--initial-cluster` value (same for every member and restart).
    initial_cluster: String,
    token: String,
    // Last field: dropped after the members are killed in `Drop`.
    dir: TempDir,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    /// stdout and stderr of every run of this member, appended.
    log: PathBuf,
    child: Option<Child>,
}

/// Why a start attempt failed.
enum StartError {
    /// A port was taken by another process: worth a retry with new ports.
    PortTaken(String),
    /// Anything else: retrying would not help.
    Fatal(String),
}

impl EtcdCluster {
    /// Whether the etcd tests should run here.
    ///
    /// False only when `WEBEX_TOKEN_SKIP_ETCD=1` is set outside CI. Otherwise
    /// true, after checking that `etcd` and `etcdctl` are installed; if they
    /// are not, this panics with the install hint (in CI even when the skip
    /// variable is set).
    pub fn available() -> bool {
        if skip_requested() && !in_ci() {
            return false;
        }
        binaries();
        true
    }

    /// `start(n)`, or `None` (with a note on stderr) when
    /// [`EtcdCluster::available`] says to skip.
    pub fn start_or_skip(n: usize) -> Option<EtcdCluster> {
        if Self::available() {
            Some(Self::start(n))
        } else {
            eprintln!("note: {SKIP_VAR}=1, skipping a test that needs a real etcd cluster");
            None
        }
    }

    /// Starts `n` members (1 or 3 in practice) on 127.0.0.1 and waits until
    /// every one of them is healthy. Panics with the member logs if the
    /// cluster does not come up within 20 s; a port taken between picking it
    /// and etcd binding it makes it start over with new ports.
    pub fn start(n: usize) -> EtcdCluster {
        assert!(n >= 1, "an etcd cluster needs at least one member");
        let (etcd, etcdctl) = binaries();
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut cluster = EtcdCluster::prepare(n, etcd.clone(), etcdctl.clone());
            match cluster.boot() {
                Ok(()) => return cluster,
                Err(StartError::PortTaken(why)) => last = why,
                Err(StartError::Fatal(why)) => panic!("{why}"),
            }
            // `cluster` drops here: members killed, temp dir removed.
        }
        panic!(
            "etcd cluster did not start in {START_ATTEMPTS} attempts (ports kept being taken)\n{last}"
        );
    }

    /// Client endpoints of all members, running or not: `127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// Client endpoints of the members currently running.
    pub fn live_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(Member::endpoint)
            .collect()
    }

    /// The `--store` value for this cluster:
    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/PREFIX` (all members,
    /// running or not; `prefix` is appended as given).
    pub fn url(&self, prefix: &str) -> String {
        store_url(&self.endpoints(), prefix)
    }

    /// Number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Members needed for a quorum: a majority.
    pub fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// Whether member `i` is running (started and not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.member(i).child.is_some()
    }

    /// SIGKILLs member `i` (the process this harness started) and reaps it;
    /// if the others still have a quorum, waits (up to 20 s) until they have
    /// a leader again, so the next request does not land in the election
    /// window. Its data dir and ports stay reserved for
    /// [`EtcdCluster::restart`]. Killing a member that is not running does
    /// nothing.
    ///
    /// etcd 3.4: a write sent to a follower while the killed member was still
    /// its leader is forwarded into the void and fails only at the client's
    /// deadline (5 s for etcdctl), even when a new leader is elected within
    /// a second. Use [`EtcdCluster::kill_no_wait`] to test that window.
    pub fn kill(&mut self, i: usize) {
        self.kill_no_wait(i);
        if self.live_count() >= self.quorum() {
            self.wait_ready();
        }
    }

    /// SIGKILLs member `i` and reaps it, without waiting for a new leader.
    pub fn kill_no_wait(&mut self, i: usize) {
        self.member_mut(i).kill();
    }

    /// Kills running members, highest index first, until fewer than a
    /// quorum are left; returns the indices it killed.
    pub fn stop_quorum(&mut self) -> Vec<usize> {
        let mut killed = Vec::new();
        for i in (0..self.members.len()).rev() {
            if self.live_count() < self.quorum() {
                break;
            }
            if self.is_running(i) {
                self.kill_no_wait(i);
                killed.push(i);
            }
        }
        killed
    }

    /// Starts member `i` again with its ports and data dir, so it rejoins
    /// the cluster with what it had. If that restores or keeps a quorum, waits
    /// (up to 20 s) until the member is healthy, i.e. has a leader and serves
    /// reads; without a quorum it only checks that the process came up.
    /// Panics if the member is running or does not come back.
    pub fn restart(&mut self, i: usize) {
        assert!(!self.is_running(i), "etcd member {i} is already running");
        let spawned = self.spawn(i);
        if let Err(why) = spawned {
            panic!("restarting etcd member {i}: {why}\n{}", self.logs());
        }
        let result = if self.live_count() >= self.quorum() {
            self.wait_healthy(&[i])
        } else {
            std::thread::sleep(Duration::from_millis(200));
            self.check_exits()
        };
        match result {
            Ok(()) => {}
            Err(StartError::PortTaken(why) | StartError::Fatal(why)) => {
                panic!("restarting etcd member {i}: {why}")
            }
        }
    }

    /// Waits (up to 20 s) until every running member is healthy; panics with
    /// the logs if not. For tests that changed the cluster and want it settled.
    pub fn wait_ready(&self) {
        let running: Vec<usize> = (0..self.size()).filter(|&i| self.is_running(i)).collect();
        if let Err(StartError::PortTaken(why) | StartError::Fatal(why)) =
            self.wait_healthy(&running)
        {
            panic!("{why}");
        }
    }

    /// Whether member `i` answers `/health` with `true` right now (it is
    /// running, has a leader and can serve a read).
    pub fn is_healthy(&self, i: usize) -> bool {
        self.is_running(i) && http_health(self.member(i).client_port, Duration::from_secs(1))
    }

    /// Runs `etcdctl ARGS` with `ETCDCTL_API=3`, `--dial-timeout=2s` and
    /// `--endpoints` set to the running members (all members if none runs).
    /// Both can be overridden by passing them again in `args` (the last one
    /// counts). Other `ETCDCTL_*` variables of the environment are removed.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let mut endpoints = self.live_endpoints();
        if endpoints.is_empty() {
            endpoints = self.endpoints();
        }
        let mut cmd = Command::new(&self.etcdctl);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCDCTL_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg("--dial-timeout=2s")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.etcdctl.display()))
    }

    /// [`EtcdCluster::etcdctl`], panicking with its output and the member
    /// logs unless it succeeds; returns its stdout.
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        if !out.status.success() {
            panic!(
                "etcdctl {args:?} failed ({}):\nstdout: {}\nstderr: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every key under `prefix` with its value (lossy UTF-8), sorted by key,
    /// read with a linearizable `get --prefix`.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let out = self.etcdctl_ok(&["get", "--prefix", "-w", "json", "--", prefix]);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("etcdctl get -w json printed {out:?}: {e}"));
        let decode = |field: &serde_json::Value| {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(field.as_str().unwrap_or_default())
                .expect("etcdctl prints keys and values in base64");
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let mut kvs: Vec<(String, String)> = v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| (decode(&kv["key"]), decode(&kv["value"])))
                    .collect()
            })
            .unwrap_or_default();
        kvs.sort();
        kvs
    }

    /// IDs (hex, as etcdctl prints them) of the leases the cluster holds.
    pub fn leases(&self) -> Vec<String> {
        // "found N leases" then one hex id a line.
        self.etcdctl_ok(&["lease", "list"])
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// The last lines of every member's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for m in &self.members {
            text.push_str(&format!(
                "--- etcd member {} (client 127.0.0.1:{}, peer 127.0.0.1:{}), last {LOG_TAIL} log lines:\n",
                m.name, m.client_port, m.peer_port
            ));
            let log = std::fs::read_to_string(&m.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    // ---- internals ----

    fn member(&self, i: usize) -> &Member {
        self.members
            .get(i)
            .unwrap_or_else(|| panic!("no etcd member {i} (cluster of {})", self.members.len()))
    }

    fn member_mut(&mut self, i: usize) -> &mut Member {
        let n = self.members.len();
        self.members
            .get_mut(i)
            .unwrap_or_else(|| panic!("no etcd member {i} (cluster of {n})"))
    }

    fn live_count(&self) -> usize {
        self.members.iter().filter(|m| m.child.is_some()).count()
    }

    /// Picks ports and lays out the temp dir; starts nothing.
    fn prepare(n: usize, etcd: PathBuf, etcdctl: PathBuf) -> EtcdCluster {
        let root = data_root().map_or_else(std::env::temp_dir, Path::to_path_buf);
        sweep_stale_dirs(&root);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&root)
            .expect("temp dir for the etcd cluster");
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        EtcdCluster {
            members,
            etcd,
            etcdctl,
            initial_cluster,
            token: format!("webex-token-test-{}", uuid::Uuid::new_v4().simple()),
            dir,
        }
    }

    /// Starts every member and waits until all are healthy.
    fn boot(&mut self) -> Result<(), StartError> {
        // One after the other, each serving its peer port before the next
        // starts. Started together, a new 3.4 member asks its peers whether
        // it is already bootstrapped and waits up to 1 s for each peer whose
        // port is bound but not serving yet: starts took 0.3 s or 2.4 s.
        for i in 0..self.members.len() {
            self.spawn(i).map_err(StartError::Fatal)?;
            self.wait_peer_serving(i)?;
        }
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.wait_healthy(&all)?;
        // Health came over plain HTTP; make sure etcdctl gets through too.
        let out = self.etcdctl(&["endpoint", "health", "--command-timeout=5s"]);
        if !out.status.success() {
            return Err(StartError::Fatal(format!(
                "etcd members answer /health but `etcdctl endpoint health` failed:\n{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            )));
        }
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let etcd = self.etcd.clone();
        let initial_cluster = self.initial_cluster.clone();
        let token = self.token.clone();
        let m = self.member_mut(i);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(|e| format!("opening {}: {e}", m.log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cloning the log handle: {e}"))?;
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        // With setpriv (util-linux, Essential on Debian) etcd gets SIGKILL
        // when the test process dies, even by SIGKILL; setpriv execs etcd,
        // so the pid is etcd's.
        let mut cmd = match setpriv() {
            Some(setpriv) => {
                let mut cmd = Command::new(setpriv);
                cmd.args(["--pdeathsig", "KILL", "--"]).arg(&etcd);
                cmd
            }
            None => Command::new(&etcd),
        };
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &token])
            // Ignored once the data dir exists (restarts read the WAL).
            .args(["--initial-cluster-state", "new"])
            // Elections in well under a second; the 2-core CI box copes.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            // 3.4 defaults to the deprecated capnslog; zap with info is
            // a few dozen lines per start and says why a member failed.
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(["--log-level", "info"])
            // No metrics/pprof listeners beyond the client port.
            .env_remove("ETCD_LISTEN_METRICS_URLS")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = spawn_from_lasting_thread(cmd)
            .map_err(|e| format!("starting {}: {e}", etcd.display()))?;
        m.child = Some(child);
        Ok(())
    }

    /// Polls `/health` of the given members until all say true; fails early
    /// if a member exits.
    fn wait_healthy(&self, which: &[usize]) -> Result<(), StartError> {
        let deadline = Instant::now() + HEALTH_DEADLINE;
        let mut probe = Probe::new();
        loop {
            self.check_exits()?;
            let timeout = probe.next();
            if which
                .iter()
                .all(|&i| http_health(self.member(i).client_port, timeout))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let state: Vec<String> = which
                    .iter()
                    .map(|&i| {
                        format!(
                            "m{i}: healthy={}",
                            http_health(self.member(i).client_port, Duration::from_secs(1))
                        )
                    })
                    .collect();
                return Err(StartError::Fatal(format!(
                    "etcd members not healthy after {HEALTH_DEADLINE:?} ({})\n{}",
                    state.join(", "),
                    self.logs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls member `i`'s peer port until it answers `/version`.
    fn wait_peer_serving(&self, i: usize) -> Result<(), StartError> {
        let deadline = Instant::now() + HEALTH_DEADLINE;
        let port = self.member(i).peer_port;
        let mut probe = Probe::new();
        loop {
            self.check_exits()?;
            if http_get(port, "/version", probe.next()).is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::Fatal(format!(
                    "etcd member m{i} does not serve its peer port after {HEALTH_DEADLINE:?}\n{}",
                    self.logs()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// An error if a member this harness runs has exited on its own.
    fn check_exits(&self) -> Result<(), StartError> {
        for m in &self.members {
            let Some(child) = &m.child else { continue };
            // try_wait needs &mut; ask the kernel through /proc instead so
            // the check can take &self. A reaped pid would be gone, ours are
            // reaped only by kill().
            if !process_alive(child.id()) {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                let why = format!("etcd member {} exited on its own\n{}", m.name, self.logs());
                return Err(if log.contains("address already in use") {
                    StartError::PortTaken(why)
                } else {
                    StartError::Fatal(why)
                });
            }
        }
        Ok(())
    }
}

impl Member {
    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL to the pid spawn() returned.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
        // `dir` (data dirs and logs) is removed when it drops after this.
    }
}

/// `etcd://HOST:PORT,HOST:PORT/PREFIX`.
fn store_url(endpoints: &[String], prefix: &str) -> String {
    format!("etcd://{}/{prefix}", endpoints.join(","))
}

/// Temp dirs are named `webex-token-etcd-<pid of the test process>-XXXX`.
const DIR_PREFIX: &str = "webex-token-etcd-";

/// Removes (once per test process) cluster dirs left behind by test
/// processes that are gone: one killed before `Drop` ran leaves its data
/// dirs, which on tmpfs hold memory.
fn sweep_stale_dirs(root: &Path) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let Ok(entries) = std::fs::read_dir(root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(DIR_PREFIX))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

/// Where the clusters' temp dirs go: /dev/shm when it is a tmpfs with room
/// (1 GiB; each member preallocates a 64 MiB WAL segment), else the system
/// temp dir. On tmpfs etcd's fsyncs cost nothing: creating the WAL on a busy
/// disk took up to 2 s per start here.
fn data_root() -> Option<&'static Path> {
    static ROOT: std::sync::OnceLock<Option<&'static Path>> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        // `df -Pk DIR`: a header, then "fs 1K-blocks used available ...".
        let out = Command::new("df").arg("-Pk").arg(shm).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text.lines().nth(1)?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let available_kib: u64 = fields.get(3)?.parse().ok()?;
        let tmpfs = std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("/dev/shm") && l.contains(" tmpfs "));
        (out.status.success() && tmpfs && available_kib >= 1024 * 1024).then_some(shm)
    })
}

fn skip_requested() -> bool {
    std::env::var(SKIP_VAR).is_ok_and(|v| v.trim() == "1")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        v.eq_ignore_ascii_case("true") || v == "1"
    })
}

/// Paths of `etcd` and `etcdctl` (PATH first, then /usr/bin); panics with
/// the install hint if either is missing.
fn binaries() -> (PathBuf, PathBuf) {
    match (find_binary("etcd"), find_binary("etcdctl")) {
        (Some(etcd), Some(etcdctl)) => (etcd, etcdctl),
        (etcd, etcdctl) => {
            let missing: Vec<&str> = [("etcd", etcd.is_none()), ("etcdctl", etcdctl.is_none())]
                .into_iter()
                .filter_map(|(name, gone)| gone.then_some(name))
                .collect();
            let ci = if in_ci() && skip_requested() {
                format!(" ({SKIP_VAR} is ignored in CI)")
            } else {
                String::new()
            };
            panic!(
                "etcd-server is not installed (missing: {}): apt-get install etcd-server etcd-client \
                 (or set {SKIP_VAR}=1 to skip the etcd tests){ci}",
                missing.join(", ")
            );
        }
    }
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn setpriv() -> Option<&'static Path> {
    static SETPRIV: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    SETPRIV.get_or_init(|| find_binary("setpriv")).as_deref()
}

/// Spawns `cmd` from one thread that lives as long as the test process. The
/// parent-death signal set by `setpriv --pdeathsig` fires when the *thread*
/// that forked the child ends, and test threads end with their test: a
/// cluster started in one test thread and used from another (a shared
/// cluster) would otherwise lose its members.
fn spawn_from_lasting_thread(cmd: Command) -> std::io::Result<Child> {
    use std::sync::mpsc;
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: std::sync::OnceLock<mpsc::Sender<Job>> = std::sync::OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("etcd-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in queue {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the etcd spawner thread");
        jobs
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .send((cmd, reply))
        .expect("the etcd spawner thread lives as long as the process");
    answer
        .recv()
        .expect("the etcd spawner thread answers every job")
}

/// `count` distinct free TCP ports on 127.0.0.1: all bound at once (so no
/// duplicates), then released for etcd to bind.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

fn process_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) still has a /proc entry: read its state.
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        Ok(stat) => {
            // "pid (comm) S ..." — the state follows the last ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z" | "X") | None)
        }
        Err(_) => false,
    }
}

/// Probe timeouts for pollers: 40 ms, a quarter longer after each miss, up
/// to 1 s (short while etcd is starting, long enough on a loaded machine).
struct Probe(Duration);

impl Probe {
    fn new() -> Probe {
        Probe(Duration::from_millis(32))
    }

    fn next(&mut self) -> Duration {
        self.0 = (self.0 * 5 / 4).min(Duration::from_secs(1));
        self.0
    }
}

/// GET /health on a member's client port: true once it has a leader and can
/// serve a read.
fn http_health(port: u16, timeout: Duration) -> bool {
    http_get(port, "/health", timeout).is_some_and(|body| body.contains("\"health\":\"true\""))
}

/// A plain HTTP GET to 127.0.0.1:`port`: the response if the status is 200
/// within `timeout`. Pollers start with a short timeout and double it: etcd
/// 3.4 binds its listeners long before it serves them, and a connection made
/// in between is accepted but never answered.
fn http_get(port: u16, path: &str, timeout: Duration) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    let timeout = Some(timeout);
    stream.set_read_timeout(timeout).ok()?;
    stream.set_write_timeout(timeout).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    // A timeout after a complete answer still leaves the answer in the buffer.
    let _ = stream.take(64 * 1024).read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    response.starts_with("HTTP/1.1 200").then_some(response)
}

// ---- self-tests of the harness ----

#[test]
fn etcd_three_members_start_and_serve_put_get() {
    let started = Instant::now();
    let Some(cluster) = EtcdCluster::start_or_skip(3) else {
        return;
    };
    eprintln!(
        "3-member etcd cluster healthy after {:?}",
        started.elapsed()
    );
    assert_eq!(cluster.endpoints().len(), 3);
    assert!((0..3).all(|i| cluster.is_healthy(i)));
    let health = cluster.etcdctl_ok(&["endpoint", "health", "-w", "json"]);
    assert_eq!(health.matches("\"health\":true").count(), 3, "{health}");

    cluster.etcdctl_ok(&["put", "/harness/a", "one"]);
    cluster.etcdctl_ok(&["put", "/harness/b", "two words\nand a line"]);
    cluster.etcdctl_ok(&["put", "/other", "x"]);
    assert_eq!(
        cluster.etcdctl_ok(&["get", "--print-value-only", "/harness/a"]),
        "one\n"
    );
    assert_eq!(
        cluster.get_prefix("/harness/"),
        vec![
            ("/harness/a".to_string(), "one".to_string()),
            (
                "/harness/b".to_string(),
                "two words\nand a line".to_string()
            ),
        ]
    );
    let lease = cluster.etcdctl_ok(&["lease", "grant", "30"]);
    let id = lease
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    assert_eq!(cluster.leases(), vec![id]);
}

#[test]
fn etcd_single_member_cluster_and_url() {
    let Some(cluster) = EtcdCluster::start_or_skip(1) else {
        return;
    };
    let [endpoint] = cluster.endpoints().try_into().expect("one endpoint");
    assert!(endpoint.starts_with("127.0.0.1:"), "{endpoint}");
    assert_eq!(cluster.url("fleet-a"), format!("etcd://{endpoint}/fleet-a"));
    assert_eq!(cluster.quorum(), 1);
    cluster.etcdctl_ok(&["put", "k", "v"]);
    assert_eq!(cluster.get_prefix("k"), vec![("k".into(), "v".into())]);
}

#[test]
fn etcd_url_lists_every_member() {
    let eps = vec![
        "127.0.0.1:1".to_string(),
        "127.0.0.1:2".to_string(),
        "127.0.0.1:3".to_string(),
    ];
    assert_eq!(
        store_url(&eps, "prod/tokens"),
        "etcd://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/prod/tokens"
    );
}

#[test]
fn etcd_put_works_with_one_member_killed() {
    let Some(mut cluster) = EtcdCluster::start_or_skip(3) else {
        return;
    };
    let all = cluster.endpoints().join(",");
    cluster.kill(0);
    assert!(!cluster.is_running(0));
    assert_eq!(cluster.live_endpoints().len(), 2);
    // Through the live members (the helper's default)...
    cluster.etcdctl_ok(&["put", "--command-timeout=5s", "k", "1"]);
    // ...and through a list that starts with the dead one, as a store URL
    // naming every host would.
    let started = Instant::now();
    cluster.etcdctl_ok(&[
        &format!("--endpoints={all}"),
        "--command-timeout=5s",
        "put",
        "k",
        "2",
    ]);
    eprintln!(
        "put via a list starting with a dead member took {:?}",
        started.elapsed()
    );
    assert_eq!(cluster.get_prefix("k"), vec![("k".into(), "2".into())]);
}

#[test]
fn etcd_put_fails_fast_without_quorum_and_recovers_after_restart() {
    let Some(mut cluster) = EtcdCluster::start_or_skip(3) else {
        return;
    };
    cluster.etcdctl_ok(&["put", "k", "before"]);
    assert_eq!(cluster.stop_quorum(), vec![2, 1]);
    assert_eq!(
        cluster.live_endpoints(),
        vec![cluster.endpoints()[0].clone()]
    );

    let started = Instant::now();
    let out = cluster.etcdctl(&["put", "--command-timeout=2s", "k", "lost"]);
    let took = started.elapsed();
    assert!(!out.status.success(), "a put without quorum must fail");
    assert!(
        took < Duration::from_secs(6),
        "the failed put took {took:?}"
    );
    assert!(
        !cluster.is_healthy(0),
        "a lone member of three has no leader"
    );

    // One member back: quorum again, writes go through, nothing was lost.
    cluster.restart(1);
    cluster.wait_ready();
    assert!(cluster.is_healthy(0) && cluster.is_healthy(1));
    // A write that timed out is undecided, not failed: if member 0 was the
    // leader, the entry sits in its log and commits once member 1 is back.
    let kvs = cluster.get_prefix("k");
    assert!(
        kvs == [("k".into(), "before".into())] || kvs == [("k".into(), "lost".into())],
        "{kvs:?}"
    );
    cluster.etcdctl_ok(&["put", "--command-timeout=5s", "k", "after"]);
    assert_eq!(cluster.get_prefix("k"), vec![("k".into(), "after".into())]);
}

#[test]
fn etcd_restarted_member_rejoins_and_catches_up() {
    let Some(mut cluster) = EtcdCluster::start_or_skip(3) else {
        return;
    };
    cluster.etcdctl_ok(&["put", "k", "1"]);
    cluster.kill(2);
    cluster.etcdctl_ok(&["put", "k", "2"]);
    cluster.restart(2);
    assert!(cluster.is_healthy(2));
    // A serializable read is answered from member 2's own copy: it must
    // have caught up with the write it missed.
    let mine = format!("--endpoints={}", cluster.endpoints()[2]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = cluster.etcdctl_ok(&[&mine, "get", "--consistency=s", "--print-value-only", "k"]);
        if got == "2\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member 2 still reads {got:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let members = cluster.etcdctl_ok(&["member", "list"]);
    assert_eq!(
        members
            .lines()
            .filter(|l| l.contains(", started, "))
            .count(),
        3,
        "{members}"
    );
}

#[test]
fn etcd_taken_port_is_reported_for_a_retry() {
    if !EtcdCluster::available() {
        eprintln!("note: {SKIP_VAR}=1, skipping a test that needs etcd");
        return;
    }
    let (etcd, etcdctl) = binaries();
    let mut cluster = EtcdCluster::prepare(1, etcd, etcdctl);
    // Someone else got the port between picking and etcd binding it.
    let _squatter = TcpListener::bind(("127.0.0.1", cluster.members[0].client_port))
        .expect("the port was free a moment ago");
    match cluster.boot() {
        Err(StartError::PortTaken(why)) => assert!(why.contains("address already in use"), "{why}"),
        Err(StartError::Fatal(why)) => panic!("a taken port must lead to a retry: {why}"),
        Ok(()) => panic!("etcd started on a taken port"),
    }
}
