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
//! Substitution: like dotenvy, `$NAME` / `${NAME}` in unquoted and
//! double-quoted values is expanded from the process environment first and
//! then from earlier entries of the file. Values this module writes never
//! contain an active substitution. Another entry that refers to an updated key
//! (e.g. `X=${WEBEX_SERVICE_APP_ACCESS_TOKEN}`) keeps its bytes, so what it
//! reads as changes with the update, exactly as dotenvy would read it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

const BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

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
}

/// A parsed env file: the original bytes plus an index of its entries.
#[derive(Debug, Clone)]
pub struct EnvDocument {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    crlf: bool,
}

/// Read an env file. `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<EnvDocument>, EnvFileError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(EnvFileError::IsDirectory {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(EnvFileError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    match std::fs::read(path) {
        Ok(bytes) => EnvDocument::parse(bytes, path).map(Some),
        // Deleted between the two calls: treat as missing.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EnvFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl EnvDocument {
    /// An empty document, for a file that does not exist yet.
    pub fn empty() -> Self {
        EnvDocument {
            bytes: Vec::new(),
            entries: Vec::new(),
            crlf: false,
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

        let lines = split_logical(body).map_err(|(start, p)| malformed(start, p))?;
        let mut subst: HashMap<String, Option<String>> = HashMap::new();
        let mut entries = Vec::new();
        for l in &lines {
            let Some(content_end) = l.content_end else {
                continue;
            };
            let text = &body[l.start..content_end];
            match parse_entry(text, &mut subst) {
                Ok(None) => {}
                Ok(Some(p)) => entries.push(Entry {
                    key: p.key,
                    value: p.value,
                    start: body_start + l.start,
                    value_start: body_start + l.start + p.value_start,
                    value_end: body_start + l.start + p.value_end,
                    term_start: body_start + l.term_start,
                    end: body_start + l.end,
                    quote: p.quote,
                }),
                Err((off, problem)) => {
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
        })
    }

    /// The value of `key` as dotenvy reads it. If the key occurs more than
    /// once, the FIRST occurrence wins (dotenvy's `load` semantics: it never
    /// overrides a variable that is already set).
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
    pub fn render_with(&self, updates: &[(&str, &str)]) -> Vec<u8> {
        self.render(updates, &[])
    }

    /// New file bytes with every entry of the given keys removed (the whole
    /// entry, all of its physical lines and its line ending). Every other byte
    /// stays as it was.
    pub fn render_without(&self, keys: &[&str]) -> Vec<u8> {
        self.render(&[], keys)
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
        let same = matches!(theirs.next(), Some(Ok((k, v))) if k == e.key && v == e.value);
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
mod tests {
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
        dotenvy::from_read_iter(body)
            .collect::<Result<Vec<_>, _>>()
            .expect("dotenvy parses")
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
        let rendered = before.render_with(updates);
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
            (R, "new'refresh\"$HOME\\ with # hash\nand newline"),
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
WEBEX_SERVICE_APP_REFRESH_TOKEN=\"new'refresh\\\"\\$HOME\\\\ with # hash\\nand newline\"\n\
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
        // swallowed the next line into this entry; keeping the suffix with a
        // value of the same shape still reads back correctly.
        let src = b"K=old  # it's\nstill comment'\nB=2\n";
        assert_eq!(doc(src).get("K").as_deref(), Some("old"));
        check_render(src, &[("K", "x y")]).unwrap();
        // Dropped: dotenvy's line splitter treats `\'` inside single quotes
        // as an escape but its value parser does not, so the old entry runs
        // on through the quote in its comment. Keeping that comment after a
        // new value would swallow the next line, so the comment goes.
        let src = b"K='a\\'  # x'\nB=2\n";
        assert_eq!(doc(src).get("K").as_deref(), Some("a\\"));
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
                b"A=s3cr3t value\n",
                "line 1: variable A: unquoted value contains",
                "s3cr3t",
            ),
            (
                b"# c\nA=s3cr3t\\q\n",
                "line 2: variable A: unsupported backslash escape",
                "s3cr3t",
            ),
            (
                b"A=1\n1s3cr3t=2\n",
                "line 2: expected a variable name",
                "s3cr3t",
            ),
            (b"A s3cr3t\n", "line 1: expected `=`", "s3cr3t"),
            (b"A=${s3cr3t\n", "line 1: unterminated ${...}", "s3cr3t"),
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
            // dotenvy agrees that these are malformed.
            let body = src.strip_prefix(BOM).unwrap_or(src);
            assert!(
                dotenvy::from_read_iter(body).any(|r| r.is_err()),
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
            let body = file.strip_prefix(BOM).unwrap_or(&file);
            let ours = EnvDocument::parse(file.clone(), &path()).is_ok();
            let theirs = dotenvy::from_read_iter(body).all(|r| r.is_ok());
            prop_assert_eq!(ours, theirs);
            prop_assume!(ours);
            let updates: Vec<(&str, &str)> = updates.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            check_render(&file, &updates)?;
        }

        #[test]
        fn prop_render_is_idempotent(file in file_strategy(), updates in updates_strategy()) {
            prop_assume!(parses(&file));
            let updates: Vec<(&str, &str)> = updates.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let once = doc(&file).render_with(&updates);
            let twice = doc(&once).render_with(&updates);
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
}
