//! Completion scripts driven in the real shells: bash through its
//! programmable-completion variables (`COMP_WORDS`, `COMP_CWORD`) and the
//! function `complete -p` names, fish through `complete -C`, zsh on a
//! pseudo-terminal (`zpty`) with `compadd` recorded.
//!
//! bash is always there. zsh and fish come from Debian's `zsh` and `fish`
//! packages (`.ci/run` installs them); without them these tests fail with
//! the install hint, unless `WEBEX_TOKEN_SKIP_SHELLS=1` is set outside CI.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to `1` to skip the zsh and fish tests where they are not installed
/// (not in CI).
const SKIP_VAR: &str = "WEBEX_TOKEN_SKIP_SHELLS";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The shell's path, or `None` when it is missing and skipping was asked for.
fn shell(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_some() {
        return found;
    }
    if std::env::var(SKIP_VAR).is_ok_and(|v| v.trim() == "1") && !in_ci() {
        eprintln!("note: {SKIP_VAR}=1 and no {name}: skipping the {name} completion test");
        return None;
    }
    panic!(
        "{name} is not installed: `apt-get install {name}` (Debian's package; .ci/run installs it), \
         or set {SKIP_VAR}=1 to skip this test outside CI"
    );
}

fn write_script(t: &TestEnv, shell: &str) -> PathBuf {
    let out = t.cmd().args(["completions", shell]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let path = t.path(&format!("completion.{shell}"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// Runs bash's completion function for `line` (the words so far, the last
/// one being completed) and returns what it offers.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        r#"source "$1" || exit 90
spec=$(complete -p webex-token) || exit 91
fn=$(printf '%s\n' "$spec" | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
[ -n "$fn" ] || exit 92
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
COMPREPLY=()
"$fn" webex-token "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        words = quoted.join(" ")
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program, "bash"])
        .arg(script)
        .output()
        .unwrap();
    assert!(out.status.success(), "bash: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn assert_offers(got: &[String], want: &[&str], what: &str) {
    for w in want {
        assert!(
            got.iter().any(|g| g == w),
            "{what}: `{w}` not offered; got {got:?}"
        );
    }
}

#[tokio::test]
async fn bash_completes_subcommands_their_flags_and_datasources() {
    let t = TestEnv::new().await;
    let script = write_script(&t, "bash");

    let top = bash_complete(&script, &["webex-token", ""]);
    assert_offers(
        &top,
        &["refresh", "status", "datasources", "setup-oauth"],
        "top",
    );

    // The upstream bug (clap#6421): nothing at all after the subcommand.
    let refresh = bash_complete(&script, &["webex-token", "refresh", "--"]);
    assert_offers(
        &refresh,
        &["--force", "--dry-run", "--min-valid", "--env-file", "--org"],
        "refresh --",
    );
    assert!(
        !refresh.iter().any(|f| f == "--all"),
        "refresh offers another command's flag: {refresh:?}"
    );

    let ds = bash_complete(&script, &["webex-token", "datasources", ""]);
    assert_offers(&ds, &["list", "show", "extend", "register"], "datasources");
    let alias = bash_complete(&script, &["webex-token", "ds", "ex"]);
    assert_eq!(alias, ["extend"], "ds ex");
    let extend = bash_complete(&script, &["webex-token", "datasources", "extend", "--"]);
    assert_offers(
        &extend,
        &["--all", "--lifetime", "--dry-run", "--concurrency"],
        "datasources extend --",
    );
    let setup = bash_complete(&script, &["webex-token", "setup-oauth", "--d"]);
    assert_offers(&setup, &["--device"], "setup-oauth --d");

    // Values of a flag with a fixed set.
    let mode = bash_complete(&script, &["webex-token", "refresh", "--write-mode", ""]);
    assert_offers(&mode, &["atomic", "in-place"], "--write-mode");
    let shells = bash_complete(&script, &["webex-token", "completions", ""]);
    assert_offers(&shells, &["bash", "zsh", "fish"], "completions");
}

#[tokio::test]
async fn fish_completes_subcommands_their_flags_and_datasources() {
    let Some(fish) = shell("fish") else { return };
    let t = TestEnv::new().await;
    let script = write_script(&t, "fish");
    let complete = |line: &str| -> Vec<String> {
        let out = Command::new(&fish)
            .args(["--no-config", "-c"])
            .arg(format!("source {}; complete -C '{line}'", script.display()))
            .env("HOME", t.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "fish: {}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect()
    };
    assert_offers(
        &complete("webex-token refresh --"),
        &["--force", "--dry-run", "--env-file"],
        "fish refresh --",
    );
    assert_offers(
        &complete("webex-token datasources "),
        &["list", "show", "extend", "register"],
        "fish datasources",
    );
    assert_offers(
        &complete("webex-token datasources extend --"),
        &["--all", "--lifetime"],
        "fish datasources extend --",
    );
}

#[tokio::test]
async fn zsh_completes_subcommands_their_flags_and_datasources() {
    let Some(zsh) = shell("zsh") else { return };
    let t = TestEnv::new().await;
    let script = write_script(&t, "zsh");
    let fdir = t.path("zfunc");
    std::fs::create_dir_all(&fdir).unwrap();
    std::fs::copy(&script, fdir.join("_webex-token")).unwrap();
    let complete = |line: &str| -> Vec<String> {
        let log = t.path("zsh-offers");
        let _ = std::fs::remove_file(&log);
        let driver = t.path("drive.zsh");
        std::fs::write(&driver, ZSH_DRIVER).unwrap();
        let out = Command::new(&zsh)
            .args(["-f"])
            .arg(&driver)
            .arg(&fdir)
            .arg(&log)
            .arg(line)
            .env("HOME", t.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "zsh: {}{}",
            stdout(&out),
            stderr(&out)
        );
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_offers(
        &complete("webex-token refresh --"),
        &["--force", "--dry-run", "--env-file"],
        "zsh refresh --",
    );
    assert_offers(
        &complete("webex-token datasources "),
        &["list", "show", "extend", "register"],
        "zsh datasources",
    );
    assert_offers(
        &complete("webex-token datasources extend --"),
        &["--all", "--lifetime"],
        "zsh datasources extend --",
    );
}

/// Starts an interactive `zsh -f` on a pseudo-terminal (zpty), loads the
/// completion from $1 with compinit, records every match `compadd` is given
/// into $2, and presses TAB after typing $3. Waits for the end marker the
/// widget prints, so no fixed sleep decides the outcome.
const ZSH_DRIVER: &str = r#"
zmodload zsh/zpty || exit 80
fdir=$1 log=$2 line=$3
zpty z zsh -f -i || exit 81
zpty -w z "PS1='' PROMPT_EOL_MARK=''; unsetopt zle_bell"
zpty -w z "fpath=(${(q)fdir} \$fpath); autoload -Uz compinit; compinit -u -d ${(q)fdir}/.zcompdump"
zpty -w z "compadd() { local -a __m; builtin compadd -O __m \"\$@\"; print -rl -- \$__m >> ${(q)log}; builtin compadd \"\$@\"; }"
zpty -w z "zstyle ':completion:*' list-prompt ''; zstyle ':completion:*' menu no; LISTMAX=10000"
zpty -w z "_done() { print -r -- DONE-MARK >> ${(q)log}; print -n DONE-MARK; }; zle -N _done; bindkey '^X' _done"
zpty -n -w z "$line"$'\t'$'\x18'
local got=''
integer tries=0
while (( tries++ < 400 )); do
  local chunk=''
  zpty -r -t z chunk 2>/dev/null && got+=$chunk
  [[ -f $log ]] && grep -q DONE-MARK $log && break
  sleep 0.05
done
zpty -d z
grep -q DONE-MARK $log || { print -r -- "no completion finished: $got"; exit 82 }
"#;

/// `man --dir` writes a page per command; their ENVIRONMENT lists every
/// variable `--help` names (both come from the parser's definitions), and
/// EXIT STATUS every code.
#[tokio::test]
async fn man_pages_for_every_command_with_every_variable_and_exit_code() {
    let t = TestEnv::new().await;
    let dir = t.path("man1");
    let out = t.cmd().args(["man", "--dir"]).arg(&dir).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let help = stdout(
        &t.cmd()
            .arg("--help")
            .env("COLUMNS", "1000")
            .output()
            .unwrap(),
    );
    let vars: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split('=').next())
        .collect();
    assert!(vars.contains(&"WEBEX_TOKEN_STORE") && vars.contains(&"WEBEX_TOKEN_LOCK_TTL"));
    for page in [
        "webex-token.1",
        "webex-token-refresh.1",
        "webex-token-datasources-extend.1",
        "webex-token-watch.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        let section = |name: &str| {
            let start = text
                .find(&format!(".SH {name}"))
                .unwrap_or_else(|| panic!("{page}: no {name}"));
            let rest = &text[start + 4..];
            rest[..rest.find("\n.SH ").unwrap_or(rest.len())].to_string()
        };
        let env = section("ENVIRONMENT");
        for v in &vars {
            assert!(env.contains(&format!("\\fB{v}\\fR")), "{page}: {v} missing");
        }
        let exit = section("\"EXIT STATUS\"");
        for c in ["0", "1", "2", "3", "4", "5"] {
            assert!(exit.contains(&format!(".TP\n\\fB{c}")), "{page}: exit {c}");
        }
        assert!(section("FILES").contains("token\\-config.json"), "{page}");
    }
    let refresh = std::fs::read_to_string(dir.join("webex-token-refresh.1")).unwrap();
    assert!(refresh.contains(".SH EXAMPLES") && refresh.contains("refresh \\-\\-dry\\-run"));
    // One page on stdout, and a clear error for a command that is not one.
    let one = t
        .cmd()
        .args(["man", "datasources", "extend"])
        .output()
        .unwrap();
    assert_eq!(code(&one), 0);
    assert!(stdout(&one).starts_with(".TH WEBEX\\-TOKEN\\-DATASOURCES\\-EXTEND 1"));
    let bad = t.cmd().args(["man", "frobnicate"]).output().unwrap();
    assert_eq!(code(&bad), 2);
    assert!(
        stderr(&bad).contains("`frobnicate` is not a command"),
        "{}",
        stderr(&bad)
    );
}
