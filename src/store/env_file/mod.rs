//! Format-preserving reader and editor for `.env` files.
//!
//! No published crate edits `.env` files while keeping their layout (dotenvy
//! only reads), so this module is hand-written. It owns:
//!
//! * reading an env file (missing file, directory, unreadable, non-UTF-8 and
//!   malformed files, with errors that name the path and line but never a
//!   value, because values are secrets);
//! * the value of a key exactly as `dotenvy` reads it;
//! * rendering new file bytes in which only the entries of updated keys
//!   change and every other byte stays as it was.
//!
//! The grammar mirrors dotenvy 0.15.7 (`iter.rs` splits the file into logical
//! lines, `parse.rs` parses one line), quirks included, because a file we
//! write must read back unchanged with dotenvy. As a safety net, [`EnvDocument::parse`]
//! also runs dotenvy itself over the same bytes and refuses the file if the
//! two readings disagree.
//!
//! Duplicate keys: [`EnvDocument::get`] returns the FIRST occurrence, like
//! `dotenvy::dotenv()`/`from_path` (which never override a variable that is
//! already set). [`EnvDocument::render_with`] rewrites EVERY occurrence, so
//! first-wins and last-wins readers agree afterwards.
//!
//! Line endings: LF and CRLF. A carriage return not followed by a line feed
//! (classic-Mac CR-only files, or a stray CR) is refused: dotenvy reads it as
//! part of a value (a CR-only file is one long value to dotenvy) while
//! python-dotenv and most other readers end the line there, so the file means
//! different things to different programs, and rewriting it could not keep
//! the owned values readable by dotenvy (the contract).
//!
//! python-dotenv's dialect: every entry is also read with python-dotenv's
//! grammar (a model of its `parser.py`). A line dotenvy rejects but
//! python-dotenv reads as exactly the same span (e.g. what its `set_key`
//! writes: `MOTTO='it\'s fine'`, or `K=a b`) is accepted and kept byte for
//! byte. A line the two read as different spans or different values is kept
//! too, but [`EnvDocument::value`] refuses to hand out its value and
//! [`EnvDocument::try_render_with`] refuses to rewrite it when it spans
//! differently, naming the line and key (never the value).
//!
//! Size: [`read`] refuses files over [`MAX_ENV_FILE_SIZE`] before parsing,
//! and anything that is not a regular file (FIFO, device, socket, directory)
//! before opening it for reading.
//!
//! Substitution: like dotenvy, `$NAME` / `${NAME}` in unquoted and
//! double-quoted values is expanded from the process environment first and
//! then from earlier entries of the file. Values this module writes never
//! contain an active substitution. Another entry that refers to an updated key
//! (e.g. `X=${WEBEX_SERVICE_APP_ACCESS_TOKEN}`) keeps its bytes, so what it
//! reads as changes with the update, exactly as dotenvy would read it.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

const BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// The largest env file [`read`] accepts (contract: 1 MiB).
pub const MAX_ENV_FILE_SIZE: u64 = crate::fs_atomic::MAX_FILE_SIZE;

/// Whether `value` is acceptable as a stored token, id or time: not empty and
/// no whitespace or control characters anywhere. A value read from the file
/// that fails this is bad stored input (see [`EnvDocument::token`]).
pub fn valid_token_text(value: &str) -> bool {
    !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether [`EnvDocument::try_render_with`] can write `value`: no control
/// characters (which includes line breaks and tabs), so that it reads back
/// unchanged on every reader.
pub fn writable_value(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

/// Errors reading or parsing an env file. Messages name the path and, where it
/// helps, the line and the key, but never a value from the file.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    /// The file exists but could not be read.
    #[error("env file {}: cannot read it: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The path is a directory.
    #[error("env file {}: is a directory, not a file", path.display())]
    IsDirectory { path: PathBuf },
    /// The path (or what a symlink points to) is a FIFO, device, socket or
    /// other special file; it was not opened for reading.
    #[error(
        "env file {}: {what}, not a regular file; nothing was read or written (point --env-file at a regular file)",
        path.display()
    )]
    NotRegular {
        path: PathBuf,
        /// "a FIFO (named pipe)", "a character device", ...
        kind: &'static str,
        /// "is a FIFO (named pipe)", or "is a symbolic link to /dev/null,
        /// which is a character device".
        what: String,
    },
    /// The file is larger than the cap; it was not parsed.
    #[error(
        "env file {}: larger than {} MiB, which no env file of webex-token needs; check --env-file / WEBEX_TOKEN_ENV_FILE",
        path.display(),
        cap >> 20
    )]
    TooLarge { path: PathBuf, cap: u64 },
    /// dotenvy and python-dotenv read this entry differently (different
    /// value, or different line boundaries).
    #[error(
        "env file {}: line {line}: variable {key}: dotenvy and python-dotenv read this entry differently, so webex-token will not {action} it; rewrite the line so both agree (for a token: `{key}=` followed by the bare value) or delete it",
        path.display()
    )]
    Ambiguous {
        path: PathBuf,
        line: usize,
        key: String,
        /// "use" (reading) or "rewrite" (writing).
        action: &'static str,
    },
    /// A stored token or time holds whitespace or control characters.
    #[error(
        "env file {}: line {line}: variable {key} holds whitespace or control characters, which no token or time has; fix the value or delete the line, then run `webex-token refresh`",
        path.display()
    )]
    BadValue {
        path: PathBuf,
        line: usize,
        key: String,
    },
    /// A value to write contains control characters or line breaks.
    #[error(
        "env file {}: cannot write variable {key}: the new value contains a control character or line break and would not read back the same; nothing was written",
        path.display()
    )]
    Unwritable { path: PathBuf, key: String },
    /// The file is not valid UTF-8.
    #[error("env file {}: line {line}: not valid UTF-8 (save the file as UTF-8)", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    /// dotenvy would reject the file.
    #[error("env file {}: line {line}: {problem}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: Problem,
    },
    /// dotenvy reads the file differently from this module's parser; editing
    /// it could change what other programs read, so it is refused.
    #[error(
        "env file {}: dotenvy reads this file differently from webex-token's editor, so it will not be edited; simplify the quoting near line {line}",
        path.display()
    )]
    Inconsistent { path: PathBuf, line: usize },
}

/// What is wrong with a malformed line (never contains file content except
/// key names).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "the file uses CR-only line endings (classic Mac); dotenvy reads the whole file as one value; convert it to LF line endings (e.g. `tr '\\r' '\\n'`)"
    )]
    CrOnlyLineEndings,
    #[error(
        "carriage return (\\r) not followed by a line feed; dotenvy reads it as part of the value, python-dotenv as a line end; remove it or use LF / CRLF line endings"
    )]
    LoneCarriageReturn,
    #[error("unterminated double quote")]
    UnterminatedDoubleQuote,
    #[error("unterminated single quote")]
    UnterminatedSingleQuote,
    #[error("unterminated ${{...}} substitution")]
    UnterminatedBrace,
    #[error("backslash at the very end of the file")]
    TrailingBackslash,
    #[error(
        "last line ends with a single space or tab and no newline (dotenvy rejects this; remove it or add a newline)"
    )]
    TrailingWhitespaceAtEof,
    #[error(
        "expected a variable name (letters, digits, `_` and `.`, starting with a letter or `_`)"
    )]
    BadKey,
    #[error("expected `=` after the variable name")]
    MissingEquals,
    #[error(
        "variable {0}: unsupported backslash escape (dotenvy accepts \\\\, \\', \\\", \\$, \\<space> and \\n)"
    )]
    BadEscape(String),
    #[error(
        "variable {0}: unquoted value contains a space or tab followed by more text; quote the value"
    )]
    TextAfterSpace(String),
}

/// How the value of an existing entry was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteStyle {
    Bare,
    Single,
    Double,
}

/// One `KEY=value` entry (a dotenvy logical line, possibly spanning several
/// physical lines). All offsets are absolute byte offsets into `bytes`.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: String,
    /// Start of the entry's first physical line.
    start: usize,
    /// Start of the value text (after `=` and whitespace).
    value_start: usize,
    /// End of the value text (before trailing whitespace / inline comment).
    value_end: usize,
    /// Start of the line terminator (`\n` or `\r\n`) ending the entry, or the
    /// end of the file.
    term_start: usize,
    /// End of the entry including its terminator.
    end: usize,
    quote: QuoteStyle,
    /// Only python-dotenv reads this entry (dotenvy rejects the line).
    python_only: bool,
    /// Both read it, with the same span, but to different values (or a `$`
    /// makes their substitutions differ).
    value_ambiguous: bool,
    /// python-dotenv reads a different span here (or fails on it).
    span_ambiguous: bool,
}

/// A parsed env file: the original bytes plus an index of its entries.
#[derive(Debug, Clone)]
pub struct EnvDocument {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    crlf: bool,
    /// For error messages only.
    path: PathBuf,
}

/// Read an env file. `Ok(None)` when it does not exist.
///
/// Refuses, before reading anything, a path (or symlink target) that is not
/// a regular file, and a file over [`MAX_ENV_FILE_SIZE`]. Never blocks on a
/// FIFO: the kind is checked with `stat`, the file opened with `O_NONBLOCK`
/// and checked again with `fstat`; at most cap + 1 bytes are ever read.
pub fn read(path: &Path) -> Result<Option<EnvDocument>, EnvFileError> {
    read_capped(path, MAX_ENV_FILE_SIZE)?
        .map(|bytes| EnvDocument::parse(bytes, path))
        .transpose()
}

/// What a special file is, for messages; `None` for a regular file.
fn special_kind(t: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("a special file")
    }
}

fn read_capped(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, EnvFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| EnvFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let refuse = |kind: &'static str| {
        if kind == "a directory" {
            EnvFileError::IsDirectory {
                path: path.to_path_buf(),
            }
        } else {
            let what = match std::fs::read_link(path) {
                Ok(to) => format!("is a symbolic link to {}, which is {kind}", to.display()),
                Err(_) => format!("is {kind}"),
            };
            EnvFileError::NotRegular {
                path: path.to_path_buf(),
                kind,
                what,
            }
        }
    };
    let too_large = || EnvFileError::TooLarge {
        path: path.to_path_buf(),
        cap,
    };
    match std::fs::metadata(path) {
        Ok(m) => {
            if let Some(kind) = special_kind(m.file_type()) {
                return Err(refuse(kind));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        // Deleted between the two calls: treat as missing.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    if let Some(kind) = special_kind(meta.file_type()) {
        return Err(refuse(kind));
    }
    if meta.len() > cap {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

impl EnvDocument {
    /// An empty document, for a file that does not exist yet.
    pub fn empty() -> Self {
        EnvDocument {
            bytes: Vec::new(),
            entries: Vec::new(),
            crlf: false,
            path: PathBuf::new(),
        }
    }

    /// Parse file bytes. `path` is only used in error messages.
    pub fn parse(bytes: Vec<u8>, path: &Path) -> Result<Self, EnvFileError> {
        // dotenvy's `load`/`from_path` skip a UTF-8 byte order mark at the
        // very start (its `from_read_iter` does not); we keep it in `bytes`
        // and parse after it.
        let body_start = if bytes.starts_with(BOM) { 3 } else { 0 };
        let body = match std::str::from_utf8(&bytes[body_start..]) {
            Ok(s) => s,
            Err(e) => {
                let bad = body_start + e.valid_up_to();
                return Err(EnvFileError::NotUtf8 {
                    path: path.to_path_buf(),
                    line: line_of(&bytes, bad),
                });
            }
        };
        let malformed = |offset: usize, problem: Problem| EnvFileError::Malformed {
            path: path.to_path_buf(),
            line: line_of(&bytes, body_start + offset),
            problem,
        };

        if let Some(cr) = lone_cr(body) {
            let problem = if body.contains('\n') {
                Problem::LoneCarriageReturn
            } else {
                Problem::CrOnlyLineEndings
            };
            return Err(malformed(cr, problem));
        }

        let lines = split_logical(body).map_err(|(start, p)| malformed(start, p))?;
        // python-dotenv's bindings by where their text starts (linear time:
        // a 1 MiB file can hold a quarter of a million entries).
        let python: HashMap<usize, py::Binding> = py::parse_stream(body)
            .into_iter()
            .filter(|b| !b.error)
            .map(|b| (b.content_start, b))
            .collect();
        let mut subst: HashMap<String, Option<String>> = HashMap::new();
        let mut entries = Vec::new();
        for l in &lines {
            let Some(content_end) = l.content_end else {
                continue;
            };
            let text = &body[l.start..content_end];
            // python-dotenv's reading of exactly this span, if it has one.
            let content_start = l.start + skip_ws(&body[l.start..l.end], 0);
            let theirs = python.get(&content_start).filter(|b| b.end == l.end);
            match parse_entry(text, &mut subst) {
                Ok(None) => {}
                Ok(Some(p)) => {
                    let same_span = theirs.is_some_and(|b| b.key.as_deref() == Some(&p.key));
                    let value_ambiguous = match theirs {
                        Some(b) if same_span => b.dollar || b.value.as_deref() != Some(&p.value),
                        _ => true,
                    };
                    entries.push(Entry {
                        key: p.key,
                        value: p.value,
                        start: body_start + l.start,
                        value_start: body_start + l.start + p.value_start,
                        value_end: body_start + l.start + p.value_end,
                        term_start: body_start + l.term_start,
                        end: body_start + l.end,
                        quote: p.quote,
                        python_only: false,
                        value_ambiguous,
                        span_ambiguous: !same_span,
                    });
                }
                Err((off, problem)) => {
                    // python-dotenv's dialect: dotenvy rejects the value, but
                    // python-dotenv reads exactly this span with a key
                    // dotenvy would accept too.
                    let value_problem = matches!(
                        problem,
                        Problem::BadEscape(_)
                            | Problem::TextAfterSpace(_)
                            | Problem::UnterminatedSingleQuote
                            | Problem::UnterminatedDoubleQuote
                            | Problem::UnterminatedBrace
                    );
                    if let Some(b) = theirs
                        && value_problem
                        && let (Some(key), Some(value)) = (&b.key, &b.value)
                        && is_valid_key(key)
                    {
                        entries.push(Entry {
                            key: key.clone(),
                            value: value.clone(),
                            start: body_start + l.start,
                            value_start: body_start + b.value_start,
                            value_end: body_start + b.value_end,
                            term_start: body_start + l.term_start,
                            end: body_start + l.end,
                            quote: b.quote,
                            python_only: true,
                            value_ambiguous: b.dollar,
                            span_ambiguous: false,
                        });
                        continue;
                    }
                    // Unterminated constructs are reported at the line where
                    // the entry starts; others where the problem is.
                    let at = match problem {
                        Problem::UnterminatedDoubleQuote
                        | Problem::UnterminatedSingleQuote
                        | Problem::UnterminatedBrace => l.start,
                        _ => l.start + off,
                    };
                    return Err(malformed(at, problem));
                }
            }
        }

        cross_check(&bytes, body, &entries, path)?;
        let crlf = first_line_ending_is_crlf(body);
        Ok(EnvDocument {
            bytes,
            entries,
            crlf,
            path: path.to_path_buf(),
        })
    }

    /// The value of `key` (first occurrence, like [`EnvDocument::get`]),
    /// refused when dotenvy and python-dotenv would read that entry
    /// differently: then the caller cannot know which value is meant.
    pub fn value(&self, key: &str) -> Result<Option<String>, EnvFileError> {
        let Some(e) = self.entries.iter().find(|e| e.key == key) else {
            return Ok(None);
        };
        if e.value_ambiguous || e.span_ambiguous {
            return Err(EnvFileError::Ambiguous {
                path: self.path.clone(),
                line: line_of(&self.bytes, e.start),
                key: key.to_string(),
                action: "use",
            });
        }
        Ok(Some(e.value.clone()))
    }

    /// A stored token, id or time: [`EnvDocument::value`], with an empty
    /// (or all-blank) value read as missing, and a value that holds
    /// whitespace or control characters refused as
    /// [`EnvFileError::BadValue`] (line and key named, value never shown).
    pub fn token(&self, key: &str) -> Result<Option<String>, EnvFileError> {
        let Some(v) = self.value(key)? else {
            return Ok(None);
        };
        if v.trim().is_empty() {
            return Ok(None);
        }
        if !valid_token_text(&v) {
            let e = self.entries.iter().find(|e| e.key == key);
            return Err(EnvFileError::BadValue {
                path: self.path.clone(),
                line: e.map_or(0, |e| line_of(&self.bytes, e.start)),
                key: key.to_string(),
            });
        }
        Ok(Some(v))
    }

    /// The value of `key` as dotenvy reads it (as python-dotenv reads it for
    /// a line only python-dotenv accepts). If the key occurs more than
    /// once, the FIRST occurrence wins (dotenvy's `load` semantics: it never
    /// overrides a variable that is already set). For values the tool relies
    /// on, prefer [`EnvDocument::value`] / [`EnvDocument::token`], which
    /// refuse entries the two readers disagree on.
    pub fn get(&self, key: &str) -> Option<String> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.clone())
    }

    /// Whether `key` occurs in the file.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    /// All keys in file order (duplicates included).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    /// The original bytes, unchanged.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// New file bytes with `updates` applied.
    ///
    /// * Every occurrence of an updated key gets the new value (so first-wins
    ///   and last-wins readers agree). Its leading whitespace, `export `
    ///   prefix, key spelling, the spacing around `=`, and its line ending stay.
    ///   A trailing inline comment (`KEY=old # note`) is kept when the
    ///   rewritten entry provably reads back the same with dotenvy; otherwise
    ///   the comment (and anything dotenvy treated as part of that entry's
    ///   comment) is dropped from that entry.
    /// * Keys not present are appended at the end, in the order given, after
    ///   adding a line ending if the file does not end with one.
    /// * Every other byte stays exactly as it was.
    /// * New lines use CRLF if the file's first line ending is CRLF, else LF.
    /// * If a key is given more than once in `updates`, the last value wins.
    ///
    /// # Panics
    /// If an updated key is not a valid dotenvy variable name
    /// (`[A-Za-z_][A-Za-z0-9_.]*`): that is a programming error.
    ///
    /// Prefer [`EnvDocument::try_render_with`]: this one panics where it
    /// returns an error.
    pub fn render_with(&self, updates: &[(&str, &str)]) -> Vec<u8> {
        match self.try_render_with(updates) {
            Ok(bytes) => bytes,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`EnvDocument::render_with`], refusing (nothing is rendered) when a
    /// value contains a control character or line break
    /// ([`EnvFileError::Unwritable`]) or when an entry to rewrite is one that
    /// python-dotenv reads as a different span ([`EnvFileError::Ambiguous`]).
    /// The result is parsed again and checked before it is returned.
    pub fn try_render_with(&self, updates: &[(&str, &str)]) -> Result<Vec<u8>, EnvFileError> {
        for (k, v) in updates {
            if !writable_value(v) {
                return Err(EnvFileError::Unwritable {
                    path: self.path.clone(),
                    key: k.to_string(),
                });
            }
        }
        let keys: Vec<&str> = updates.iter().map(|u| u.0).collect();
        self.check_rewritable(&keys)?;
        let out = self.render(updates, &[]);
        self.verify(&out, updates, &[])?;
        Ok(out)
    }

    /// [`EnvDocument::render_without`], refusing entries python-dotenv reads
    /// as a different span.
    pub fn try_render_without(&self, keys: &[&str]) -> Result<Vec<u8>, EnvFileError> {
        self.check_rewritable(keys)?;
        let out = self.render(&[], keys);
        self.verify(&out, &[], keys)?;
        Ok(out)
    }

    fn check_rewritable(&self, keys: &[&str]) -> Result<(), EnvFileError> {
        match self
            .entries
            .iter()
            .find(|e| e.span_ambiguous && keys.contains(&e.key.as_str()))
        {
            Some(e) => Err(EnvFileError::Ambiguous {
                path: self.path.clone(),
                line: line_of(&self.bytes, e.start),
                key: e.key.clone(),
                action: "rewrite",
            }),
            None => Ok(()),
        }
    }

    /// Safety net: the rendered bytes parse, every updated key reads the
    /// new value everywhere (both readers), removed keys are gone, and every
    /// other entry reads as before.
    fn verify(
        &self,
        out: &[u8],
        updates: &[(&str, &str)],
        removals: &[&str],
    ) -> Result<(), EnvFileError> {
        let after = EnvDocument::parse(out.to_vec(), &self.path)?;
        let touched = |k: &str| removals.contains(&k) || updates.iter().any(|u| u.0 == k);
        let want = |k: &str| updates.iter().rev().find(|u| u.0 == k).map(|u| u.1);
        // Other entries: same bytes (what they read as may change only
        // through a substitution of an updated key, as documented above).
        let others = |d: &EnvDocument| -> Vec<(String, Vec<u8>, bool, bool)> {
            d.entries
                .iter()
                .filter(|e| !touched(&e.key))
                .map(|e| {
                    let text = d.bytes[e.start..e.term_start].to_vec();
                    (e.key.clone(), text, e.python_only, e.span_ambiguous)
                })
                .collect()
        };
        let mut ok = others(self) == others(&after);
        for e in after.entries.iter().filter(|e| touched(&e.key)) {
            // dotenvy must read the new value (the contract) and both
            // readers must agree on the entry's span. python-dotenv reads a
            // value differently only if it holds `$` with `'` or `\`, which
            // no token or time does: `webex::is_token_text` refuses a token
            // answer holding them, so the store never writes a token file
            // that [`EnvDocument::value`] then refuses.
            ok &= want(&e.key) == Some(e.value.as_str()) && !e.python_only && !e.span_ambiguous;
        }
        for (k, _) in updates {
            ok &= after.contains_key(k);
        }
        if ok {
            Ok(())
        } else {
            let key = updates
                .first()
                .map(|u| u.0)
                .or(removals.first().copied())
                .unwrap_or_default();
            Err(EnvFileError::Inconsistent {
                path: self.path.clone(),
                line: self
                    .entries
                    .iter()
                    .find(|e| e.key == key)
                    .map_or(1, |e| line_of(&self.bytes, e.start)),
            })
        }
    }

    /// New file bytes with every entry of the given keys removed (the whole
    /// entry, all of its physical lines and its line ending). Every other byte
    /// stays as it was.
    ///
    /// Prefer [`EnvDocument::try_render_without`].
    pub fn render_without(&self, keys: &[&str]) -> Vec<u8> {
        match self.try_render_without(keys) {
            Ok(bytes) => bytes,
            Err(e) => panic!("{e}"),
        }
    }

    fn render(&self, updates: &[(&str, &str)], removals: &[&str]) -> Vec<u8> {
        for (k, _) in updates {
            assert!(is_valid_key(k), "invalid env variable name {k:?}");
        }
        let value_for = |key: &str| updates.iter().rev().find(|(k, _)| *k == key).map(|u| u.1);

        let mut out = Vec::with_capacity(self.bytes.len() + 256);
        let mut cursor = 0;
        for e in &self.entries {
            if removals.contains(&e.key.as_str()) {
                out.extend_from_slice(&self.bytes[cursor..e.start]);
                cursor = e.end;
            } else if let Some(v) = value_for(&e.key) {
                out.extend_from_slice(&self.bytes[cursor..e.start]);
                out.extend_from_slice(self.rewrite_entry(e, v).as_bytes());
                cursor = e.term_start;
            }
        }
        out.extend_from_slice(&self.bytes[cursor..]);

        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut appended: Vec<&str> = Vec::new();
        for (k, _) in updates {
            if !self.contains_key(k) && !appended.contains(k) {
                appended.push(k);
            }
        }
        for k in appended {
            let body_len = out.len() - usize::from(out.starts_with(BOM)) * 3;
            if body_len > 0 && !out.ends_with(b"\n") {
                out.extend_from_slice(eol.as_bytes());
            }
            let v = value_for(k).unwrap_or_default();
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(encode_value(v, QuoteStyle::Bare).as_bytes());
            out.extend_from_slice(eol.as_bytes());
        }
        out
    }

    /// The new text from `e.start` up to (not including) `e.term_start`.
    fn rewrite_entry(&self, e: &Entry, value: &str) -> String {
        // Invariant: the whole document is valid UTF-8 after the BOM, and
        // every offset used here is at a char boundary.
        let text = |a: usize, b: usize| String::from_utf8_lossy(&self.bytes[a..b]).into_owned();
        let prefix = text(e.start, e.value_start);
        let encoded = encode_value(value, e.quote);
        let terminator = text(e.term_start, e.end);

        // A: keep what follows the value (spacing, inline comment).
        let keep = format!("{prefix}{encoded}{}", text(e.value_end, e.term_start));
        if reads_back(&format!("{keep}{terminator}"), &e.key, value) {
            return keep;
        }
        // B: drop it. The entry then is `prefix + quoted value`, which always
        // ends in dotenvy's "complete" state, so the entry ends at the same
        // line ending as before and later lines are read as before.
        let plain = format!("{prefix}{encoded}");
        debug_assert!(reads_back(&format!("{plain}{terminator}"), &e.key, value));
        plain
    }
}

/// Compare our reading with dotenvy's own reading of the same bytes (after
/// the BOM); any disagreement means editing could be unsafe.
fn cross_check(
    bytes: &[u8],
    body: &str,
    entries: &[Entry],
    path: &Path,
) -> Result<(), EnvFileError> {
    let inconsistent = |offset: usize| EnvFileError::Inconsistent {
        path: path.to_path_buf(),
        line: line_of(bytes, offset),
    };
    let mut theirs = dotenvy::from_read_iter(body.as_bytes());
    for e in entries {
        let same = match theirs.next() {
            // dotenvy rejects the line that only python-dotenv reads.
            Some(Err(_)) => e.python_only,
            Some(Ok((k, v))) => !e.python_only && k == e.key && v == e.value,
            None => false,
        };
        if !same {
            return Err(inconsistent(e.start));
        }
    }
    if theirs.next().is_some() {
        return Err(inconsistent(bytes.len()));
    }
    Ok(())
}

/// Does `region` read, with dotenvy's grammar, as exactly one entry `key=value`
/// that ends at the end of `region`?
fn reads_back(region: &str, key: &str, value: &str) -> bool {
    let Ok(lines) = split_logical(region) else {
        return false;
    };
    let [line] = lines.as_slice() else {
        return false;
    };
    let Some(content_end) = line.content_end else {
        return false;
    };
    if line.end != region.len() {
        return false;
    }
    // Values we write have no active substitution, so an empty map is fine.
    let mut subst = HashMap::new();
    matches!(parse_entry(&region[..content_end], &mut subst),
        Ok(Some(p)) if p.key == key && p.value == value)
}

/// Characters that need no quoting at all.
fn is_safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-.:+/=@,".contains(c)
}

/// Can `value` be written between single quotes? dotenvy's value parser takes
/// everything literally there, but its line splitter treats a backslash as an
/// escape even inside single quotes (so `'a\'` would swallow the next line),
/// hence no backslashes; no newline because single quotes cannot escape one.
fn single_quotable(value: &str) -> bool {
    !value.contains(['\'', '\\', '\n'])
}

/// Encode a value so dotenvy reads it back unchanged.
///
/// 1. If the existing entry is quoted and that quote style can represent the
///    value, keep the style.
/// 2. Else a non-empty value of only `[A-Za-z0-9_\-.:+/=@,]` is written bare.
/// 3. Else single quotes if the value has no `'`, `\` or newline (this
///    includes the empty value: `''`).
/// 4. Else double quotes, escaping `\`, `"`, `$` (dotenvy substitutes `$NAME`
///    inside double quotes) and newline (as `\n`).
fn encode_value(value: &str, existing: QuoteStyle) -> String {
    let safe = !value.is_empty() && value.chars().all(is_safe_char);
    match existing {
        QuoteStyle::Single if single_quotable(value) => return format!("'{value}'"),
        QuoteStyle::Double => return double_quote(value),
        _ => {}
    }
    if safe {
        value.to_string()
    } else if single_quotable(value) {
        format!("'{value}'")
    } else {
        double_quote(value)
    }
}

fn double_quote(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '$' => s.push_str("\\$"),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Offset of the first `\r` not followed by `\n`.
fn lone_cr(body: &str) -> Option<usize> {
    let b = body.as_bytes();
    (0..b.len()).find(|&i| b[i] == b'\r' && b.get(i + 1) != Some(&b'\n'))
}

/// 1-based line number of a byte offset.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn first_line_ending_is_crlf(body: &str) -> bool {
    match body.find('\n') {
        Some(i) => i > 0 && body.as_bytes()[i - 1] == b'\r',
        None => false,
    }
}

// ---------------------------------------------------------------------------
// Logical lines (mirror of dotenvy's `QuotedLines` in iter.rs)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitState {
    Complete,
    Escape,
    StrongOpen,
    StrongOpenEscape,
    WeakOpen,
    WeakOpenEscape,
    WhiteSpace,
}

/// One logical line: offsets relative to the text given to `split_logical`.
#[derive(Debug, Clone, Copy)]
struct Logical {
    start: usize,
    /// End of the text dotenvy hands to its line parser; `None` for a line
    /// whose first non-blank character is `#` (a comment line).
    content_end: Option<usize>,
    /// Start of the final line terminator (or end of text).
    term_start: usize,
    /// End including the terminator.
    end: usize,
}

/// Run the splitter state machine over `chunk`. Returns the new state, or
/// `Err(byte offset of '#')` when an inline comment starts.
fn advance(mut state: SplitState, chunk: &str) -> Result<SplitState, usize> {
    use SplitState::*;
    for (pos, c) in chunk.char_indices() {
        state = match state {
            WhiteSpace => match c {
                '#' => return Err(pos),
                '\\' => Escape,
                '"' => WeakOpen,
                '\'' => StrongOpen,
                _ => Complete,
            },
            Escape => Complete,
            Complete => match c {
                c if c.is_whitespace() && c != '\n' && c != '\r' => WhiteSpace,
                '\\' => Escape,
                '"' => WeakOpen,
                '\'' => StrongOpen,
                _ => Complete,
            },
            WeakOpen => match c {
                '\\' => WeakOpenEscape,
                '"' => Complete,
                _ => WeakOpen,
            },
            WeakOpenEscape => WeakOpen,
            StrongOpen => match c {
                '\\' => StrongOpenEscape,
                '\'' => Complete,
                _ => StrongOpen,
            },
            StrongOpenEscape => StrongOpen,
        };
    }
    Ok(state)
}

/// Split text into dotenvy logical lines. Error: (start of the failing
/// logical line, problem).
fn split_logical(text: &str) -> Result<Vec<Logical>, (usize, Problem)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let start = pos;
        let mut state = SplitState::Complete;
        loop {
            if pos == text.len() {
                // dotenvy: EOF while the logical line is incomplete.
                let problem = match state {
                    SplitState::WeakOpen | SplitState::WeakOpenEscape => {
                        Problem::UnterminatedDoubleQuote
                    }
                    SplitState::StrongOpen | SplitState::StrongOpenEscape => {
                        Problem::UnterminatedSingleQuote
                    }
                    SplitState::Escape => Problem::TrailingBackslash,
                    SplitState::WhiteSpace | SplitState::Complete => {
                        Problem::TrailingWhitespaceAtEof
                    }
                };
                return Err((start, problem));
            }
            let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
            let has_nl = text.as_bytes()[line_end - 1] == b'\n';
            let term_start = if has_nl {
                if line_end >= 2 && text.as_bytes()[line_end - 2] == b'\r' {
                    line_end - 2
                } else {
                    line_end - 1
                }
            } else {
                line_end
            };
            if text[start..line_end].trim_start().starts_with('#') {
                out.push(Logical {
                    start,
                    content_end: None,
                    term_start,
                    end: line_end,
                });
                pos = line_end;
                break;
            }
            match advance(state, &text[pos..line_end]) {
                Err(hash) => {
                    out.push(Logical {
                        start,
                        content_end: Some(pos + hash),
                        term_start,
                        end: line_end,
                    });
                    pos = line_end;
                    break;
                }
                Ok(SplitState::Complete) => {
                    out.push(Logical {
                        start,
                        content_end: Some(term_start),
                        term_start,
                        end: line_end,
                    });
                    pos = line_end;
                    break;
                }
                Ok(s) => {
                    state = s;
                    pos = line_end;
                }
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// One logical line (mirror of dotenvy's `parse.rs`)
// ---------------------------------------------------------------------------

struct Parsed {
    key: String,
    value: String,
    /// Byte offsets into the logical line.
    value_start: usize,
    value_end: usize,
    quote: QuoteStyle,
}

fn skip_ws(s: &str, from: usize) -> usize {
    s[from..]
        .find(|c: char| !c.is_whitespace())
        .map_or(s.len(), |i| from + i)
}

fn parse_key(s: &str, from: usize) -> Result<(String, usize), (usize, Problem)> {
    let rest = &s[from..];
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err((from, Problem::BadKey));
    }
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(rest.len());
    Ok((rest[..len].to_string(), from + len))
}

/// Parse one logical line. `Ok(None)` for blank and comment lines. Errors
/// carry a byte offset into `line`.
fn parse_entry(
    line: &str,
    subst: &mut HashMap<String, Option<String>>,
) -> Result<Option<Parsed>, (usize, Problem)> {
    let s = line.trim_end();
    let mut off = skip_ws(s, 0);
    if s[off..].is_empty() || s[off..].starts_with('#') {
        return Ok(None);
    }
    let (mut key, after) = parse_key(s, off)?;
    off = skip_ws(s, after);
    if key == "export" && !s[off..].starts_with('=') {
        // `export` is a prefix here, not the key.
        let (k, after) = parse_key(s, off)?;
        key = k;
        off = skip_ws(s, after);
    }
    if !s[off..].starts_with('=') {
        return Err((off, Problem::MissingEquals));
    }
    off = skip_ws(s, off + 1);
    let rest = &s[off..];
    if rest.is_empty() || rest.starts_with('#') {
        subst.insert(key.clone(), None);
        return Ok(Some(Parsed {
            key,
            value: String::new(),
            value_start: off,
            value_end: off,
            quote: QuoteStyle::Bare,
        }));
    }
    let quote = match rest.as_bytes()[0] {
        b'\'' => QuoteStyle::Single,
        b'"' => QuoteStyle::Double,
        _ => QuoteStyle::Bare,
    };
    let (value, end) = parse_value(rest, subst).map_err(|(i, p)| {
        let p = match p {
            Problem::BadEscape(_) => Problem::BadEscape(key.clone()),
            Problem::TextAfterSpace(_) => Problem::TextAfterSpace(key.clone()),
            p => p,
        };
        (off + i, p)
    })?;
    subst.insert(key.clone(), Some(value.clone()));
    Ok(Some(Parsed {
        key,
        value,
        value_start: off,
        value_end: off + end,
        quote,
    }))
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Subst {
    None,
    Block,
    Braced,
}

/// Mirror of dotenvy's `parse_value`. Returns the value and the byte offset
/// where the value text ends (the first unquoted space/tab that ends it, or
/// the end of `input`).
fn parse_value(
    input: &str,
    subst: &mut HashMap<String, Option<String>>,
) -> Result<(String, usize), (usize, Problem)> {
    let mut strong = false;
    let mut weak = false;
    let mut escaped = false;
    let mut value_end: Option<usize> = None;
    let mut out = String::new();
    let mut mode = Subst::None;
    let mut name = String::new();

    for (i, c) in input.char_indices() {
        if value_end.is_some() {
            if c == ' ' || c == '\t' {
                continue;
            } else if c == '#' {
                break;
            } else {
                return Err((i, Problem::TextAfterSpace(String::new())));
            }
        } else if escaped {
            match c {
                '\\' | '\'' | '"' | '$' | ' ' => out.push(c),
                'n' => out.push('\n'),
                _ => return Err((i, Problem::BadEscape(String::new()))),
            }
            escaped = false;
        } else if strong {
            if c == '\'' {
                strong = false;
            } else {
                out.push(c);
            }
        } else if mode != Subst::None {
            if c.is_alphanumeric() {
                name.push(c);
            } else if mode == Subst::Block {
                if c == '{' && name.is_empty() {
                    mode = Subst::Braced;
                } else {
                    substitute(subst, &std::mem::take(&mut name), &mut out);
                    if c == '$' {
                        mode = Subst::Block;
                    } else {
                        mode = Subst::None;
                        out.push(c);
                    }
                }
            } else if c == '}' {
                mode = Subst::None;
                substitute(subst, &std::mem::take(&mut name), &mut out);
            } else {
                name.push(c);
            }
        } else if c == '$' {
            mode = Subst::Block;
        } else if weak {
            if c == '"' {
                weak = false;
            } else if c == '\\' {
                escaped = true;
            } else {
                out.push(c);
            }
        } else if c == '\'' {
            strong = true;
        } else if c == '"' {
            weak = true;
        } else if c == '\\' {
            escaped = true;
        } else if c == ' ' || c == '\t' {
            value_end = Some(i);
        } else {
            out.push(c);
        }
    }

    if mode == Subst::Braced {
        return Err((0, Problem::UnterminatedBrace));
    }
    if strong {
        return Err((0, Problem::UnterminatedSingleQuote));
    }
    if weak {
        return Err((0, Problem::UnterminatedDoubleQuote));
    }
    substitute(subst, &name, &mut out);
    Ok((out, value_end.unwrap_or(input.len())))
}

fn substitute(subst: &HashMap<String, Option<String>>, name: &str, out: &mut String) {
    if let Ok(v) = std::env::var(name) {
        out.push_str(&v);
    } else if let Some(Some(v)) = subst.get(name) {
        out.push_str(v);
    }
}

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------
// python-dotenv's reading (a model of python-dotenv 1.x `parser.py`)
// ---------------------------------------------------------------------------

mod py {
    use super::QuoteStyle;

    /// One binding as python-dotenv's `parse_stream` yields it. Offsets are
    /// byte offsets into the whole text.
    #[derive(Debug, Clone)]
    pub(super) struct Binding {
        /// After the leading whitespace (python's `\s*`, newlines included).
        pub content_start: usize,
        /// End including the line ending.
        pub end: usize,
        pub key: Option<String>,
        pub value: Option<String>,
        pub value_start: usize,
        pub value_end: usize,
        pub quote: QuoteStyle,
        /// An unquoted or double-quoted value holding `$`: python-dotenv
        /// interpolates `${...}` there, dotenvy also `$NAME`; the two values
        /// cannot be compared without the environment.
        pub dollar: bool,
        pub error: bool,
    }

    /// Python's `\s` (str.isspace), close enough: Rust's White_Space plus
    /// the four separators U+001C..U+001F that Python also counts.
    fn space(c: char) -> bool {
        c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
    }

    /// `[^\S\r\n]`
    fn blank(c: char) -> bool {
        space(c) && c != '\r' && c != '\n'
    }

    struct Reader<'a> {
        s: &'a str,
        pos: usize,
    }

    impl Reader<'_> {
        fn peek(&self) -> Option<char> {
            self.s[self.pos..].chars().next()
        }
        fn skip(&mut self, f: impl Fn(char) -> bool) -> usize {
            let start = self.pos;
            while let Some(c) = self.peek().filter(|&c| f(c)) {
                self.pos += c.len_utf8();
            }
            self.pos - start
        }
        fn eat(&mut self, c: char) -> bool {
            if self.peek() == Some(c) {
                self.pos += c.len_utf8();
                true
            } else {
                false
            }
        }
    }

    pub(super) fn parse_stream(s: &str) -> Vec<Binding> {
        let mut r = Reader { s, pos: 0 };
        let mut out = Vec::new();
        while r.pos < s.len() {
            let b = binding(&mut r);
            if b.content_start >= s.len() {
                break;
            }
            out.push(b);
        }
        out
    }

    fn binding(r: &mut Reader<'_>) -> Binding {
        r.skip(space);
        let mut b = Binding {
            content_start: r.pos,
            end: r.pos,
            key: None,
            value: None,
            value_start: r.pos,
            value_end: r.pos,
            quote: QuoteStyle::Bare,
            dollar: false,
            error: false,
        };
        if r.pos == r.s.len() {
            return b;
        }
        if binding_body(r, &mut b).is_none() {
            // `_rest_of_line`: `[^\r\n]*(?:\r|\n|\r\n)?` (the `\r` branch
            // first, so a CRLF leaves its `\n` to the next binding's `\s*`).
            r.skip(|c| c != '\r' && c != '\n');
            if !r.eat('\r') {
                r.eat('\n');
            }
            b.error = true;
            b.key = None;
            b.value = None;
        }
        b.end = r.pos;
        b
    }

    fn binding_body(r: &mut Reader<'_>, b: &mut Binding) -> Option<()> {
        // `(?:export[^\S\r\n]+)?`
        if r.s[r.pos..].starts_with("export") {
            let save = r.pos;
            r.pos += "export".len();
            if r.skip(blank) == 0 {
                r.pos = save;
            }
        }
        // Key.
        match r.peek() {
            Some('#') => {}
            Some('\'') => {
                let rest = &r.s[r.pos + 1..];
                let len = rest.find('\'').filter(|&n| n > 0)?;
                b.key = Some(rest[..len].to_string());
                r.pos += len + 2;
            }
            _ => {
                let start = r.pos;
                r.skip(|c| c != '=' && c != '#' && !space(c));
                if r.pos == start {
                    return None;
                }
                b.key = Some(r.s[start..r.pos].to_string());
            }
        }
        r.skip(blank);
        if r.eat('=') {
            let spaced = r.skip(blank) > 0;
            b.value_start = r.pos;
            b.value_end = r.pos;
            b.value = Some(if spaced && r.peek() == Some('#') {
                String::new()
            } else {
                value(r, b)?
            });
        }
        // `(?:[^\S\r\n]*#[^\r\n]*)?`
        let save = r.pos;
        r.skip(blank);
        if r.eat('#') {
            r.skip(|c| c != '\r' && c != '\n');
        } else {
            r.pos = save;
        }
        // `[^\S\r\n]*(?:\r\n|\n|\r|$)`
        r.skip(blank);
        if r.pos == r.s.len() || r.eat('\n') {
            return Some(());
        }
        if r.eat('\r') {
            r.eat('\n');
            return Some(());
        }
        None
    }

    fn value(r: &mut Reader<'_>, b: &mut Binding) -> Option<String> {
        let start = r.pos;
        match r.peek() {
            Some(q @ ('\'' | '"')) => {
                // `'((?:\\.|[^'\\])*)'`, DOTALL (same for `"`).
                let mut chars = r.s[start + 1..].char_indices();
                let close = loop {
                    match chars.next()? {
                        (_, '\\') => {
                            chars.next()?;
                        }
                        (i, c) if c == q => break start + 1 + i,
                        _ => {}
                    }
                };
                let raw = &r.s[start + 1..close];
                r.pos = close + 1;
                b.value_end = r.pos;
                if q == '\'' {
                    b.quote = QuoteStyle::Single;
                    Some(unescape(raw, false))
                } else {
                    b.quote = QuoteStyle::Double;
                    b.dollar = raw.contains('$');
                    Some(unescape(raw, true))
                }
            }
            None | Some('\n' | '\r') => Some(String::new()),
            Some(_) => {
                r.skip(|c| c != '\r' && c != '\n');
                let part = &r.s[start..r.pos];
                // `re.sub(r"\s+#.*", "", part).rstrip()`
                let mut cut = part.len();
                for (i, c) in part.char_indices() {
                    if space(c) {
                        let rest = part[i..].trim_start_matches(space);
                        if rest.starts_with('#') {
                            cut = i;
                            break;
                        }
                    }
                }
                let v = part[..cut].trim_end_matches(space);
                b.value_end = start + v.len();
                b.dollar = v.contains('$');
                Some(v.to_string())
            }
        }
    }

    /// Single quotes decode `\\` and `\'`; double quotes also `\"`, `\a`,
    /// `\b`, `\f`, `\n`, `\r`, `\t`, `\v`. Any other backslash stays.
    fn unescape(raw: &str, double: bool) -> String {
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let decoded = match chars.peek() {
                Some('\\') => Some('\\'),
                Some('\'') => Some('\''),
                Some('"') if double => Some('"'),
                Some('a') if double => Some('\u{7}'),
                Some('b') if double => Some('\u{8}'),
                Some('f') if double => Some('\u{c}'),
                Some('n') if double => Some('\n'),
                Some('r') if double => Some('\r'),
                Some('t') if double => Some('\t'),
                Some('v') if double => Some('\u{b}'),
                _ => None,
            };
            match decoded {
                Some(d) => {
                    out.push(d);
                    chars.next();
                }
                None => out.push('\\'),
            }
        }
        out
    }
}
