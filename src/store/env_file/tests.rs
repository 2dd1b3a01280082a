//! The env file's edits, reads and round trips (unit and property tests).

use super::*;
use proptest::prelude::*;

const A: &str = "WEBEX_SERVICE_APP_ACCESS_TOKEN";
const R: &str = "WEBEX_SERVICE_APP_REFRESH_TOKEN";
const AE: &str = "WEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT";
const RE: &str = "WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT";
const TOKEN: &str = "ZDI3MGEyYzQtNmFlNS00NDNhLWFlNzAtZGVhMjVmMGY2ZTg2NjYy_PF84_1eb65fdf-9643-417f-9974-ad72cae0e10f";

fn path() -> PathBuf {
    PathBuf::from("/abs/.env")
}

fn doc(bytes: &[u8]) -> EnvDocument {
    EnvDocument::parse(bytes.to_vec(), &path()).expect("parses")
}

/// What dotenvy reads: all pairs in order. `from_read_iter` does not skip
/// a BOM (only `load`/`from_path` do), so strip it like they do.
fn dotenvy_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    let body = bytes.strip_prefix(BOM).unwrap_or(bytes);
    // Lines only python-dotenv reads are errors to dotenvy; skip them.
    dotenvy::from_read_iter(body)
        .filter_map(Result::ok)
        .collect()
}

/// Bytes outside the entries of `keys` (each entry's text up to its line
/// terminator), in order.
fn gaps(d: &EnvDocument, keys: &[&str], limit: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cursor = 0;
    for e in d
        .entries
        .iter()
        .filter(|e| keys.contains(&e.key.as_str()))
        .take(limit)
    {
        out.push(d.bytes[cursor..e.start].to_vec());
        cursor = e.term_start;
    }
    out.push(d.bytes[cursor..].to_vec());
    out
}

/// Check every property of a render: updated keys read back exactly (all
/// occurrences), other keys unchanged, bytes outside updated entries
/// unchanged, re-render idempotent.
fn check_render(original: &[u8], updates: &[(&str, &str)]) -> Result<(), TestCaseError> {
    let before = doc(original);
    let rendered = match before.try_render_with(updates) {
        Ok(r) => r,
        // Refused, naming the problem: fine, nothing is lost.
        Err(EnvFileError::Unwritable { key, .. }) => {
            prop_assert!(updates.iter().any(|u| u.0 == key && !writable_value(u.1)));
            return Ok(());
        }
        Err(EnvFileError::Ambiguous { key, line, .. }) => {
            let e = before
                .entries
                .iter()
                .find(|e| e.key == key && e.span_ambiguous);
            prop_assert!(e.is_some_and(|e| line_of(&before.bytes, e.start) == line));
            return Ok(());
        }
        // The rewrite's own check found that dotenvy would read the
        // result differently (exotic quoting next to an owned key, e.g.
        // `K='\' #"`): refused, naming the line, nothing written.
        Err(e @ EnvFileError::Inconsistent { .. }) => {
            prop_assert!(e.to_string().contains("line"), "{}", e);
            return Ok(());
        }
        Err(e) => return Err(TestCaseError::fail(format!("render failed: {e}"))),
    };
    let after = EnvDocument::parse(rendered.clone(), &path())
        .map_err(|e| TestCaseError::fail(format!("rendered file does not parse: {e}")))?;
    let keys: Vec<&str> = updates.iter().map(|u| u.0).collect();
    let want = |k: &str| updates.iter().rev().find(|u| u.0 == k).map(|u| u.1);

    let old_pairs = dotenvy_pairs(original);
    let new_pairs = dotenvy_pairs(&rendered);
    for k in &keys {
        let vals: Vec<&String> = new_pairs
            .iter()
            .filter(|p| p.0 == *k)
            .map(|p| &p.1)
            .collect();
        prop_assert!(!vals.is_empty(), "key {} missing", k);
        for v in vals {
            prop_assert_eq!(Some(v.as_str()), want(k));
        }
        let got = after.get(k);
        prop_assert_eq!(got.as_deref(), want(k));
    }
    let others = |pairs: &[(String, String)]| {
        pairs
            .iter()
            .filter(|p| !keys.contains(&p.0.as_str()))
            .cloned()
            .collect::<Vec<_>>()
    };
    prop_assert_eq!(others(&old_pairs), others(&new_pairs));

    // Byte preservation outside the updated entries.
    let n = before
        .entries
        .iter()
        .filter(|e| keys.contains(&e.key.as_str()))
        .count();
    let g_old = gaps(&before, &keys, n);
    let g_new = gaps(&after, &keys, n);
    prop_assert_eq!(g_old.len(), g_new.len());
    let last = g_old.len() - 1;
    prop_assert_eq!(&g_old[..last], &g_new[..last]);
    prop_assert!(g_new[last].starts_with(&g_old[last]), "tail changed");

    // Idempotent.
    prop_assert_eq!(after.render_with(updates), rendered);
    Ok(())
}

const MESSY: &str = "# Webex settings\n\
\n\
   # indented comment with 'quote\n\
export WEBEX_SERVICE_APP_ACCESS_TOKEN=old-access # note\n\
OTHER='single quoted $NOT'\n\
  export   SPACED = \"double \\\"q\\\" \\$x\"\n\
MULTI=\"line one\n\
line two # not a comment\n\
line three\"\n\
WEBEX_SERVICE_APP_REFRESH_TOKEN='multi\n\
line refresh'\n\
EMPTY=\n\
HASH=a#b\n\
WEBEX_SERVICE_APP_ACCESS_TOKEN=\"second\"\n\
dotted.key=1\n\
TAIL=last";

fn owned_updates() -> Vec<(&'static str, &'static str)> {
    vec![
        (A, TOKEN),
        (R, "new'refresh\"$HOME\\ with # hash"),
        (AE, "2026-03-21T10:00:00Z"),
        (RE, "2026-06-19T10:00:00+00:00"),
    ]
}

#[test]
fn messy_lf_file_keeps_every_other_byte() {
    let rendered = doc(MESSY.as_bytes()).render_with(&owned_updates());
    let text = String::from_utf8(rendered.clone()).unwrap();
    let expected = format!(
        "# Webex settings\n\
\n\
   # indented comment with 'quote\n\
export WEBEX_SERVICE_APP_ACCESS_TOKEN={TOKEN} # note\n\
OTHER='single quoted $NOT'\n\
  export   SPACED = \"double \\\"q\\\" \\$x\"\n\
MULTI=\"line one\n\
line two # not a comment\n\
line three\"\n\
WEBEX_SERVICE_APP_REFRESH_TOKEN=\"new'refresh\\\"\\$HOME\\\\ with # hash\"\n\
EMPTY=\n\
HASH=a#b\n\
WEBEX_SERVICE_APP_ACCESS_TOKEN=\"{TOKEN}\"\n\
dotted.key=1\n\
TAIL=last\n\
WEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT=2026-03-21T10:00:00Z\n\
WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT=2026-06-19T10:00:00+00:00\n"
    );
    assert_eq!(text, expected);
    check_render(MESSY.as_bytes(), &owned_updates()).unwrap();
    let d = doc(MESSY.as_bytes());
    assert_eq!(
        d.get(A).as_deref(),
        Some("old-access"),
        "first occurrence wins"
    );
    assert_eq!(
        d.get("MULTI").as_deref(),
        Some("line one\nline two # not a comment\nline three")
    );
    assert_eq!(d.get("OTHER").as_deref(), Some("single quoted $NOT"));
    assert_eq!(d.get("SPACED").as_deref(), Some("double \"q\" $x"));
    assert_eq!(d.get("EMPTY").as_deref(), Some(""));
    assert_eq!(d.get("HASH").as_deref(), Some("a#b"));
    assert_eq!(d.get("dotted.key").as_deref(), Some("1"));
    assert_eq!(d.get("MISSING"), None);
}

#[test]
fn messy_crlf_file_with_bom() {
    let crlf = format!("\u{FEFF}{}", MESSY.replace('\n', "\r\n"));
    let rendered = doc(crlf.as_bytes()).render_with(&owned_updates());
    assert!(rendered.starts_with(BOM));
    let text = String::from_utf8(rendered).unwrap();
    assert!(text.ends_with(
        "TAIL=last\r\nWEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT=2026-03-21T10:00:00Z\r\n\
WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT=2026-06-19T10:00:00+00:00\r\n"
    ));
    assert!(text.contains(&format!(
        "export WEBEX_SERVICE_APP_ACCESS_TOKEN={TOKEN} # note\r\n"
    )));
    check_render(crlf.as_bytes(), &owned_updates()).unwrap();
    // A multi-line value in a CRLF file keeps the CR (dotenvy does too).
    assert_eq!(
        doc(crlf.as_bytes()).get("MULTI").as_deref(),
        Some("line one\r\nline two # not a comment\r\nline three")
    );
}

#[test]
fn empty_and_missing_files() {
    let d = EnvDocument::empty();
    assert_eq!(d.get(A), None);
    let out = d.render_with(&[(A, TOKEN), (AE, "")]);
    assert_eq!(out, format!("{A}={TOKEN}\n{AE}=''\n").into_bytes());
    check_render(b"", &[(A, TOKEN), (AE, "")]).unwrap();
    check_render(b"# only a comment", &[(A, TOKEN)]).unwrap();
    assert_eq!(
        doc(b"# c").render_with(&[(A, "x")]),
        b"# c\nWEBEX_SERVICE_APP_ACCESS_TOKEN=x\n".to_vec()
    );
    assert_eq!(
        doc(b"\xEF\xBB\xBF").render_with(&[(A, "x")]),
        b"\xEF\xBB\xBFWEBEX_SERVICE_APP_ACCESS_TOKEN=x\n".to_vec()
    );
    let dir = tempfile::tempdir().unwrap();
    assert!(read(&dir.path().join("nope")).unwrap().is_none());
    let err = read(dir.path()).unwrap_err();
    assert!(matches!(err, EnvFileError::IsDirectory { .. }), "{err}");
}

#[test]
fn quoting_rules() {
    assert_eq!(encode_value(TOKEN, QuoteStyle::Bare), TOKEN);
    assert_eq!(
        encode_value("2026-03-21T10:00:00Z", QuoteStyle::Bare),
        "2026-03-21T10:00:00Z"
    );
    assert_eq!(encode_value("abc", QuoteStyle::Single), "'abc'");
    assert_eq!(encode_value("abc", QuoteStyle::Double), "\"abc\"");
    assert_eq!(encode_value("", QuoteStyle::Bare), "''");
    assert_eq!(encode_value("a b#c$d\"", QuoteStyle::Bare), "'a b#c$d\"'");
    assert_eq!(encode_value("it's", QuoteStyle::Single), "\"it's\"");
    assert_eq!(encode_value("a\\b", QuoteStyle::Bare), "\"a\\\\b\"");
    assert_eq!(encode_value("$x\n", QuoteStyle::Bare), "\"\\$x\\n\"");
}

#[test]
fn comment_kept_or_dropped_safely() {
    // Kept.
    let out = doc(b"K=old # note\n").render_with(&[("K", "new value")]);
    assert_eq!(out, b"K='new value' # note\n".to_vec());
    // The old "comment" contains a quote, so dotenvy's line splitter
    // swallowed the next line into this entry, while python-dotenv ends
    // the entry at the first line: the readers disagree about which
    // lines belong to K, so K is neither used nor rewritten, and the
    // refusal names the line and the key.
    let src = b"K=old  # it's\nstill comment'\nB=2\n";
    assert_eq!(doc(src).get("K").as_deref(), Some("old"));
    let err = doc(src).try_render_with(&[("K", "x y")]).unwrap_err();
    assert!(
        matches!(err, EnvFileError::Ambiguous { line: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("line 1: variable K:"), "{err}");
    assert!(matches!(
        doc(src).value("K"),
        Err(EnvFileError::Ambiguous { .. })
    ));
    check_render(src, &[("K", "x y")]).unwrap();
    // B, on a line of its own after it, is still read and rewritable.
    assert_eq!(doc(src).value("B").unwrap().as_deref(), Some("2"));
    check_render(src, &[("B", "3")]).unwrap();
    // Dropped: dotenvy's line splitter treats `\'` inside single quotes
    // as an escape but its value parser does not, so the old entry runs
    // on through the quote in its comment. Keeping that comment after a
    // new value would swallow the next line, so the comment goes.
    let src = b"K='a\\'  # x'\nB=2\n";
    assert_eq!(doc(src).get("K").as_deref(), Some("a\\"));
    // python-dotenv reads `a'  # x` there: the value is not used.
    assert!(matches!(
        doc(src).value("K"),
        Err(EnvFileError::Ambiguous { line: 1, .. })
    ));
    let out = doc(src).render_with(&[("K", "new")]);
    assert_eq!(out, b"K='new'\nB=2\n".to_vec());
    check_render(src, &[("K", "new")]).unwrap();
}

#[test]
fn render_without_removes_entries() {
    let d = doc(MESSY.as_bytes());
    let out = d.render_without(&[A, R]);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains(A));
    assert!(!text.contains("line refresh"));
    assert!(text.contains("OTHER='single quoted $NOT'\n"));
    let pairs = dotenvy_pairs(text.as_bytes());
    assert_eq!(pairs.len(), dotenvy_pairs(MESSY.as_bytes()).len() - 3);
}

fn err_text(src: &[u8]) -> String {
    EnvDocument::parse(src.to_vec(), &path())
        .unwrap_err()
        .to_string()
}

#[test]
fn malformed_files_name_path_and_line_never_value() {
    let cases: &[(&[u8], &str, &str)] = &[
        (
            b"A=1\nB=\"s3cr3t\nC=2\n",
            "line 2: unterminated double quote",
            "s3cr3t",
        ),
        (
            b"A=1\n\nB='s3cr3t\n",
            "line 3: unterminated single quote",
            "s3cr3t",
        ),
        (
            b"A=\"s3cr3t\" value\n",
            "line 1: variable A: unquoted value contains",
            "s3cr3t",
        ),
        (
            b"# c\nA='s3cr3t'\\q\n",
            "line 2: variable A: unsupported backslash escape",
            "s3cr3t",
        ),
        (
            b"A=1\n1s3cr3t=2\n",
            "line 2: expected a variable name",
            "s3cr3t",
        ),
        (b"A s3cr3t\n", "line 1: expected `=`", "s3cr3t"),
        (
            b"A=\"${s3cr3t\" x\n",
            "line 1: unterminated ${...}",
            "s3cr3t",
        ),
        (
            b"A=1\rB=s3cr3t\r",
            "line 1: the file uses CR-only",
            "s3cr3t",
        ),
        (
            b"A=1\nB=s3cr3t\rC=2\n",
            "line 2: carriage return (\\r) not followed",
            "s3cr3t",
        ),
        (
            b"A=s3cr3t ",
            "line 1: last line ends with a single space",
            "s3cr3t",
        ),
        (
            b"A=1\nB=ok\nC=s3cr3t\xff\n",
            "line 3: not valid UTF-8",
            "s3cr3t",
        ),
    ];
    for (src, want, secret) in cases {
        let msg = err_text(src);
        assert!(msg.starts_with("env file /abs/.env: "), "{msg}");
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        assert!(!msg.contains(secret), "{msg} leaks the value");
        // dotenvy agrees that these are malformed (except the stray
        // CRs, which dotenvy silently reads into a value).
        let body = src.strip_prefix(BOM).unwrap_or(src);
        assert!(
            src.contains(&b'\r') || dotenvy::from_read_iter(body).any(|r| r.is_err()),
            "dotenvy accepts {:?}",
            String::from_utf8_lossy(src)
        );
    }
    // `read` gives the same errors for a real file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(&p, b"A=1\nB=\"s3cr3t\n").unwrap();
    let msg = read(&p).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "env file {}: line 2: unterminated double quote",
            p.display()
        )
    );
}

// ---- property tests -------------------------------------------------

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(A.to_string()),
        Just(R.to_string()),
        Just(AE.to_string()),
        Just(RE.to_string()),
        "[A-Z_][A-Z0-9_.]{0,6}",
    ]
}

/// A value written in one of the ways a human might write it.
fn written_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9_./:=+@,-]{1,12}",
        "[^'\\\\\n]{0,12}".prop_map(|v| format!("'{v}'")),
        any::<String>().prop_map(|v| double_quote(&v)),
        // Raw newlines inside double quotes (multi-line value).
        "[a-z \n#']{0,12}".prop_map(|v| format!("\"{v}\"")),
        // Backslashes in single quotes (dotenvy's splitter and parser
        // disagree about them), escapes and substitutions in bare values.
        "[a\\\\ #]{0,6}".prop_map(|v| format!("'{v}'")),
        "([a-z]|\\\\[ $n]|\\$[A-Z]{1,3}|\\$\\{[A-Z]{0,3}\\}){1,4}",
    ]
}

fn line_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\r\n]{0,12}".prop_map(|c| format!("#{c}")),
        "[ \t]{0,3}".prop_map(|ws: String| ws),
        (
            "[ \t]{0,2}",
            any::<bool>(),
            key_strategy(),
            "[ ]{0,1}",
            written_value(),
            prop_oneof![
                Just(String::new()),
                "[ ]{1,2}#[^\r\n]{0,8}".prop_map(|c: String| c)
            ],
        )
            .prop_map(|(ws, export, key, sp, value, comment)| {
                let export = if export { "export " } else { "" };
                format!("{ws}{export}{key}{sp}={sp}{value}{comment}")
            }),
    ]
}

fn file_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(line_strategy(), 0..12),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lines, crlf, trailing, bom)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut s = if bom {
                "\u{FEFF}".to_string()
            } else {
                String::new()
            };
            s.push_str(&lines.join(eol));
            if trailing && !lines.is_empty() {
                s.push_str(eol);
            }
            s.into_bytes()
        })
}

fn update_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(TOKEN.to_string()),
        Just("2026-03-21T10:00:00Z".to_string()),
        "[A-Za-z0-9_./:=+@,-]{0,20}",
        "[ a-z'\"$#\\\\\n\r\t{}]{0,20}",
        any::<String>(),
    ]
}

fn updates_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![A, R, AE, RE]).prop_map(String::from),
            update_value(),
        ),
        1..=4,
    )
}

fn parses(file: &[u8]) -> bool {
    let body = file.strip_prefix(BOM).unwrap_or(file);
    EnvDocument::parse(file.to_vec(), &path()).is_ok()
        && dotenvy::from_read_iter(body).all(|r| r.is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_render_round_trips(file in file_strategy(), updates in updates_strategy()) {
        // A generated file can be malformed (e.g. a lone trailing space at
        // EOF); our parser and dotenvy must then agree it is.
        // Every line dotenvy rejects but we accept must be one that
        // python-dotenv reads (python_only).
        let body = file.strip_prefix(BOM).unwrap_or(&file);
        let ours = EnvDocument::parse(file.clone(), &path());
        let dotenvy_errors = dotenvy::from_read_iter(body).filter(|r| r.is_err()).count();
        if let Ok(d) = &ours {
            let python_only = d.entries.iter().filter(|e| e.python_only).count();
            prop_assert_eq!(python_only, dotenvy_errors);
        } else {
            // Or a stray CR, which dotenvy reads into a value.
            let cr = lone_cr(&String::from_utf8_lossy(&file)).is_some();
            prop_assert!(dotenvy_errors > 0 || cr, "refused a file dotenvy reads");
        }
        prop_assume!(ours.is_ok());
        let updates: Vec<(&str, &str)> = updates.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        check_render(&file, &updates)?;
    }

    #[test]
    fn prop_render_is_idempotent(file in file_strategy(), updates in updates_strategy()) {
        prop_assume!(parses(&file));
        let updates: Vec<(&str, &str)> = updates.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // Refusals are checked in prop_render_round_trips.
        let Ok(once) = doc(&file).try_render_with(&updates) else { return Ok(()) };
        let twice = doc(&once).try_render_with(&updates).expect("second render");
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn prop_get_matches_dotenvy_first_wins(file in file_strategy()) {
        prop_assume!(parses(&file));
        let d = doc(&file);
        let pairs = dotenvy_pairs(&file);
        for (k, _) in &pairs {
            let first = pairs.iter().find(|p| &p.0 == k).map(|p| p.1.clone());
            prop_assert_eq!(d.get(k), first);
        }
    }
}

// ---- what `read` refuses ----------------------------------------------

#[test]
fn read_refuses_special_files_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.env");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let sock = dir.path().join("sock.env");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut cases = vec![(fifo, "a FIFO (named pipe)"), (sock, "a socket")];
    // A character device with /dev/null's numbers, made inside the temp
    // dir (only where mknod is allowed).
    let dev = dir.path().join("null.env");
    if std::process::Command::new("mknod")
        .arg(&dev)
        .args(["c", "1", "3"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        cases.push((dev, "a character device"));
    }
    for (special, kind) in cases {
        let link = dir.path().join(".env");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&special, &link).unwrap();
        let before = std::fs::symlink_metadata(&special).unwrap().file_type();
        for (p, what) in [
            (special.clone(), format!("is {kind}")),
            (
                link.clone(),
                format!(
                    "is a symbolic link to {}, which is {kind}",
                    special.display()
                ),
            ),
        ] {
            let (tx, rx) = std::sync::mpsc::channel();
            let q = p.clone();
            std::thread::spawn(move || {
                let _ = tx.send(read(&q).map(|d| d.is_some()).map_err(|e| e.to_string()));
            });
            let msg = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("read blocked on a special file")
                .unwrap_err();
            assert_eq!(
                msg,
                format!(
                    "env file {}: {what}, not a regular file; nothing was read or written (point --env-file at a regular file)",
                    p.display()
                )
            );
        }
        assert_eq!(
            std::fs::symlink_metadata(&special).unwrap().file_type(),
            before
        );
    }
    // A symlink to a regular file reads through it.
    let real = dir.path().join("real.env");
    std::fs::write(&real, format!("{A}={TOKEN}\n")).unwrap();
    let link = dir.path().join("link.env");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert_eq!(
        read(&link).unwrap().unwrap().token(A).unwrap().as_deref(),
        Some(TOKEN)
    );
}

#[test]
fn read_caps_the_size_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    // A million lines (4 MB): refused without being parsed.
    std::fs::write(&p, "A=1\n".repeat(1_000_000)).unwrap();
    let err = read(&p).unwrap_err();
    assert!(
        matches!(
            err,
            EnvFileError::TooLarge {
                cap: MAX_ENV_FILE_SIZE,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("larger than 1 MiB"), "{err}");
    // Exactly at the cap: read and parsed, in linear time.
    let line = "K=1\n";
    let n = (MAX_ENV_FILE_SIZE as usize) / line.len();
    std::fs::write(&p, line.repeat(n)).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), MAX_ENV_FILE_SIZE);
    let started = std::time::Instant::now();
    let d = read(&p).unwrap().unwrap();
    assert_eq!(d.keys().count(), n);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

// ---- CR, control characters, python-dotenv's dialect ------------------

#[test]
fn cr_only_and_stray_cr_are_refused_with_the_line() {
    let msg = err_text(b"A=1\rWEBEX_SERVICE_APP_REFRESH_TOKEN=s3cr3t\rB=2\r");
    assert!(
        msg.contains("line 1: the file uses CR-only line endings"),
        "{msg}"
    );
    assert!(msg.contains("convert it to LF"), "{msg}");
    let msg = err_text(b"A=1\r\nB=2\r\n# note\rC=3\r\n");
    assert!(msg.contains("line 3: carriage return"), "{msg}");
    // CRLF files keep working and keep their style (see
    // messy_crlf_file_with_bom); a CR right before LF is not "lone".
    check_render(b"A=1\r\nB='x\r\ny'\r\n", &[(A, TOKEN)]).unwrap();
    let out = doc(b"A=1\r\n").render_with(&[(A, TOKEN)]);
    assert_eq!(out, format!("A=1\r\n{A}={TOKEN}\r\n").into_bytes());
}

#[test]
fn control_characters_cannot_be_written_and_are_flagged_when_read() {
    let d = doc(b"K=1\n");
    for bad in [
        "a\nb",
        "a\rb",
        "tab\there",
        "nul\0",
        "esc\u{1b}[0m",
        "del\u{7f}",
        "nel\u{85}",
    ] {
        let err = d.try_render_with(&[(A, "ok"), (R, bad)]).unwrap_err();
        assert!(
            matches!(&err, EnvFileError::Unwritable { key, .. } if key == R),
            "{err}"
        );
        assert!(err.to_string().contains(R), "{err}");
        assert!(!err.to_string().contains(bad), "{err}");
    }
    assert!(valid_token_text(TOKEN));
    assert!(valid_token_text("2026-03-21T10:00:00Z"));
    for bad in ["", " ", "a b", "a\tb", "a\u{1}b", "a\u{a0}b", "a\nb"] {
        assert!(!valid_token_text(bad), "{bad:?}");
    }
    // Read back: a token holding a space or a control character.
    let src = format!("X=1\n{A}='s3cr3t with space'\n{R}=\"s3cr3t\\tx\"\n{AE}=''\n");
    let d = doc(src.as_bytes());
    let err = d.token(A).unwrap_err();
    assert!(
        matches!(err, EnvFileError::BadValue { line: 2, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("line 2: variable {A} holds whitespace")),
        "{msg}"
    );
    assert!(!msg.contains("s3cr3t"), "{msg}");
    assert!(matches!(
        d.token(R),
        Err(EnvFileError::BadValue { line: 3, .. })
    ));
    assert_eq!(d.token(AE).unwrap(), None, "empty reads as missing");
    assert_eq!(d.token(RE).unwrap(), None);
    assert_eq!(
        doc(format!("{A}={TOKEN}\n").as_bytes())
            .token(A)
            .unwrap()
            .as_deref(),
        Some(TOKEN)
    );
}

/// Lines python-dotenv 1.2.4's `set_key(path, "K", value, quote_mode)`
/// wrote into an empty file, with what its `dotenv_values(...,
/// interpolate=False)` read back (`None`: it could not parse the line).
/// Generated once with python-dotenv; no Python is needed here.
const PYTHON_SET_KEY: &[(&str, &str, &str, Option<&str>)] = &[
    ("always", "plain", "K='plain'\n", Some("plain")),
    (
        "always",
        "it's fine",
        "K='it\\'s fine'\n",
        Some("it's fine"),
    ),
    (
        "always",
        "say \"hi\"",
        "K='say \"hi\"'\n",
        Some("say \"hi\""),
    ),
    (
        "always",
        "back\\slash",
        "K='back\\\\slash'\n",
        Some("back\\slash"),
    ),
    ("always", "end\\", "K='end\\\\'\n", Some("end\\")),
    ("always", "a\\'b", "K='a\\\\\\'b'\n", Some("a\\'b")),
    ("always", "x'y'z", "K='x\\'y\\'z'\n", Some("x'y'z")),
    ("always", "'", "K='\\''\n", Some("'")),
    ("always", "\\\\", "K='\\\\\\\\'\n", Some("\\\\")),
    ("always", "#hash", "K='#hash'\n", Some("#hash")),
    ("always", "a # b", "K='a # b'\n", Some("a # b")),
    ("always", " lead", "K=' lead'\n", Some(" lead")),
    ("always", "trail ", "K='trail '\n", Some("trail ")),
    ("always", "", "K=''\n", Some("")),
    (
        "always",
        "two\nlines",
        "K='two\nlines'\n",
        Some("two\nlines"),
    ),
    ("always", "$HOME", "K='$HOME'\n", Some("$HOME")),
    ("always", "a b", "K='a b'\n", Some("a b")),
    ("always", "tab\there", "K='tab\there'\n", Some("tab\there")),
    ("always", "ünï", "K='ünï'\n", Some("ünï")),
    ("always", "a=b", "K='a=b'\n", Some("a=b")),
    ("always", "\\n", "K='\\\\n'\n", Some("\\n")),
    ("auto", "plain", "K=plain\n", Some("plain")),
    ("auto", "it's fine", "K='it\\'s fine'\n", Some("it's fine")),
    ("auto", "say \"hi\"", "K='say \"hi\"'\n", Some("say \"hi\"")),
    (
        "auto",
        "back\\slash",
        "K='back\\\\slash'\n",
        Some("back\\slash"),
    ),
    ("auto", "end\\", "K='end\\\\'\n", Some("end\\")),
    ("auto", "a\\'b", "K='a\\\\\\'b'\n", Some("a\\'b")),
    ("auto", "x'y'z", "K='x\\'y\\'z'\n", Some("x'y'z")),
    ("auto", "'", "K='\\''\n", Some("'")),
    ("auto", "\\\\", "K='\\\\\\\\'\n", Some("\\\\")),
    ("auto", "#hash", "K='#hash'\n", Some("#hash")),
    ("auto", "a # b", "K='a # b'\n", Some("a # b")),
    ("auto", " lead", "K=' lead'\n", Some(" lead")),
    ("auto", "trail ", "K='trail '\n", Some("trail ")),
    ("auto", "", "K=''\n", Some("")),
    ("auto", "two\nlines", "K='two\nlines'\n", Some("two\nlines")),
    ("auto", "$HOME", "K='$HOME'\n", Some("$HOME")),
    ("auto", "a b", "K='a b'\n", Some("a b")),
    ("auto", "tab\there", "K='tab\there'\n", Some("tab\there")),
    ("auto", "ünï", "K=ünï\n", Some("ünï")),
    ("auto", "a=b", "K='a=b'\n", Some("a=b")),
    ("auto", "\\n", "K='\\\\n'\n", Some("\\n")),
    ("never", "plain", "K=plain\n", Some("plain")),
    ("never", "it's fine", "K=it's fine\n", Some("it's fine")),
    ("never", "say \"hi\"", "K=say \"hi\"\n", Some("say \"hi\"")),
    (
        "never",
        "back\\slash",
        "K=back\\slash\n",
        Some("back\\slash"),
    ),
    ("never", "end\\", "K=end\\\n", Some("end\\")),
    ("never", "a\\'b", "K=a\\'b\n", Some("a\\'b")),
    ("never", "x'y'z", "K=x'y'z\n", Some("x'y'z")),
    ("never", "'", "K='\n", None),
    ("never", "\\\\", "K=\\\\\n", Some("\\\\")),
    ("never", "#hash", "K=#hash\n", Some("#hash")),
    ("never", "a # b", "K=a # b\n", Some("a")),
    ("never", " lead", "K= lead\n", Some("lead")),
    ("never", "trail ", "K=trail \n", Some("trail")),
    ("never", "", "K=\n", Some("")),
    ("never", "two\nlines", "K=two\nlines\n", Some("two")),
    ("never", "$HOME", "K=$HOME\n", Some("$HOME")),
    ("never", "a b", "K=a b\n", Some("a b")),
    ("never", "tab\there", "K=tab\there\n", Some("tab\there")),
    ("never", "ünï", "K=ünï\n", Some("ünï")),
    ("never", "a=b", "K=a=b\n", Some("a=b")),
    ("never", "\\n", "K=\\n\n", Some("\\n")),
];

#[test]
fn python_dotenv_set_key_lines_are_read_as_python_reads_them_or_refused() {
    let mut accepted = 0;
    for &(mode, value, line, python) in PYTHON_SET_KEY {
        let src = format!("# made by python-dotenv\nA=1\n{line}B=2\n");
        let case = format!("{mode} {value:?} as {line:?}");
        match EnvDocument::parse(src.clone().into_bytes(), &path()) {
            Err(e) => {
                // Refused: the message names one of the lines set_key
                // wrote (line 3 on), never the value.
                let msg = e.to_string();
                let named = (3..=3 + line.matches('\n').count())
                    .any(|n| msg.contains(&format!("line {n}:")));
                assert!(named, "{case}: {msg}");
            }
            Ok(d) => {
                assert_eq!(d.value("A").unwrap().as_deref(), Some("1"), "{case}");
                assert_eq!(d.value("B").unwrap().as_deref(), Some("2"), "{case}");
                match d.value("K") {
                    Ok(v) => {
                        assert_eq!(v.as_deref(), python, "{case}: misread");
                        accepted += 1;
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        assert!(msg.contains("line 3: variable K:"), "{case}: {msg}");
                    }
                }
                // Rewriting the owned keys keeps the python line byte for
                // byte, and the result still reads K the same way.
                let out = d
                    .try_render_with(&[(A, TOKEN), (AE, "2026-03-21T10:00:00Z")])
                    .unwrap();
                let text = String::from_utf8(out.clone()).unwrap();
                assert!(text.starts_with(&src), "{case}");
                let again = doc(&out);
                assert_eq!(again.value(A).unwrap().as_deref(), Some(TOKEN));
                assert_eq!(again.get("K"), d.get("K"), "{case}");
            }
        }
    }
    // The point of the dialect support: the common cases are read.
    assert!(accepted >= 40, "only {accepted} accepted");
    // The motivating line: refused before, now read and kept.
    let src = b"MOTTO='it\\'s fine'\nWEBEX_SERVICE_APP_ACCESS_TOKEN=old\n";
    let d = doc(src);
    assert_eq!(d.value("MOTTO").unwrap().as_deref(), Some("it's fine"));
    let out = d.try_render_with(&[(A, TOKEN)]).unwrap();
    assert_eq!(
        out,
        format!("MOTTO='it\\'s fine'\n{A}={TOKEN}\n").into_bytes()
    );
}

#[test]
fn python_dialect_lines_and_their_limits() {
    // Accepted: dotenvy rejects these values, python-dotenv reads them,
    // and both agree where the entry ends.
    let d = doc(b"P=a b\nQ=s3cr3t\\q\nR2=${X\nS='x\\'y' # c\n");
    assert_eq!(d.value("P").unwrap().as_deref(), Some("a b"));
    assert_eq!(d.value("Q").unwrap().as_deref(), Some("s3cr3t\\q"));
    assert_eq!(d.value("S").unwrap().as_deref(), Some("x'y"));
    // `$` may be interpolated by python-dotenv: not used.
    assert!(matches!(
        d.value("R2"),
        Err(EnvFileError::Ambiguous { line: 3, .. })
    ));
    // An owned key on such a line is rewritten like any other.
    check_render(
        b"X=1\nWEBEX_SERVICE_APP_ACCESS_TOKEN=a b # c\nY=2\n",
        &[(A, TOKEN)],
    )
    .unwrap();
    let out = doc(b"X=1\nexport WEBEX_SERVICE_APP_ACCESS_TOKEN='o\\'ld' # c\nY=2\n")
        .try_render_with(&[(A, TOKEN)])
        .unwrap();
    assert_eq!(
        out,
        format!("X=1\nexport {A}='{TOKEN}' # c\nY=2\n").into_bytes()
    );
    // Both readers accept, values differ: kept, value refused, rewrite ok.
    let d = doc(b"K='back\\\\slash'\n");
    assert_eq!(
        d.get("K").as_deref(),
        Some("back\\\\slash"),
        "dotenvy's reading"
    );
    let err = d.value("K").unwrap_err().to_string();
    assert!(
        err.contains("line 1: variable K: dotenvy and python-dotenv read"),
        "{err}"
    );
    assert!(!err.contains("slash"), "{err}");
    assert_eq!(
        d.try_render_with(&[("K", "v")]).unwrap(),
        b"K='v'\n".to_vec()
    );
    // python-dotenv ends the entry elsewhere: still refused as before.
    assert!(EnvDocument::parse(b"K=it's fine\nB=2\n".to_vec(), &path()).is_err());
}

/// A value as python-dotenv's `set_key` would be asked to write it.
fn python_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9]{1,8}",
        "[a-z '\"\\\\#$= \n\tü]{0,10}",
        any::<String>().prop_map(|s| s.chars().take(10).collect()),
    ]
}

/// python-dotenv's `set_key` line for `value` (model of its quoting:
/// "always" quotes, "auto" quotes unless `str.isalnum()`, "never" writes
/// the value raw; quoting escapes `\` then `'`).
fn set_key_line(key: &str, value: &str, mode: u8) -> (String, bool) {
    let isalnum = !value.is_empty() && value.chars().all(char::is_alphanumeric);
    let quote = mode == 0 || (mode == 1 && !isalnum);
    if quote {
        let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
        (format!("{key}='{escaped}'\n"), true)
    } else {
        (format!("{key}={value}\n"), false)
    }
}

/// Does python-dotenv read `value` back from a never-quoted line?
fn never_round_trips(value: &str) -> bool {
    let space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    !value.contains(['\r', '\n'])
        && !value.starts_with(['\'', '"'])
        && !value.starts_with(space)
        && !value.ends_with(space)
        && !value
            .char_indices()
            .any(|(i, c)| space(c) && value[i..].trim_start_matches(space).starts_with('#'))
}

/// `file` with a few carriage returns or control characters put in.
fn with_controls() -> impl Strategy<Value = Vec<u8>> {
    (
        file_strategy(),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop::sample::select(vec![
                    "\r", "\r\n", "\0", "\t", "\u{1b}", "\u{7f}", "\u{85}", "\u{b}",
                ]),
            ),
            1..4,
        ),
    )
        .prop_map(|(file, inserts)| {
            let mut s = String::from_utf8(file).unwrap();
            for (at, c) in inserts {
                let mut i = at.index(s.len() + 1);
                while !s.is_char_boundary(i) {
                    i -= 1;
                }
                s.insert_str(i, c);
            }
            s.into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// CR and control characters anywhere: the file is refused, or it
    /// is read, every non-owned line survives a rewrite byte for byte,
    /// and the owned values read back (check_render).
    #[test]
    fn prop_cr_and_controls_parse_and_keep_or_refuse(file in with_controls(), updates in updates_strategy()) {
        let Ok(d) = EnvDocument::parse(file.clone(), &path()) else {
            return Ok(());
        };
        prop_assert!(lone_cr(std::str::from_utf8(&file).unwrap()).is_none());
        let _ = d;
        let updates: Vec<(&str, &str)> = updates.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        check_render(&file, &updates)?;
    }

    /// Any line python-dotenv's set_key writes is read to the value
    /// python-dotenv reads, or refused naming the line (and key);
    /// never misread, and never costs the other variables.
    #[test]
    fn prop_python_set_key_lines(value in python_value(), mode in 0u8..3) {
        let (line, quoted) = set_key_line("K", &value, mode);
        let src = format!("A=1\n{line}B=2\n");
        match EnvDocument::parse(src.clone().into_bytes(), &path()) {
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("line "), "{}", msg);
                // Quoted lines are refused only for a CR or a wide-open
                // quote, never for `\\'`.
                prop_assert!(!quoted || value.contains('\r'), "{}: {}", line, msg);
            }
            Ok(d) => {
                prop_assert_eq!(d.value("A").unwrap(), Some("1".to_string()));
                match d.value("K") {
                    Ok(got) => {
                        if quoted || never_round_trips(&value) {
                            prop_assert_eq!(got, Some(value.clone()), "misread {:?}", line);
                        }
                    }
                    Err(e) => {
                        prop_assert!(e.to_string().contains("variable K:"), "{}", e);
                    }
                }
                if !value.contains('\n') {
                    prop_assert_eq!(d.value("B").unwrap(), Some("2".to_string()));
                }
                let out = d.try_render_with(&[(A, TOKEN)]).unwrap();
                prop_assert!(out.starts_with(src.as_bytes()));
            }
        }
    }
}
