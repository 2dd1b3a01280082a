//! Safe file writes for the env file and the config file.
//!
//! Both files hold secrets (refresh tokens), and a half-written file could
//! lose the only refresh token that works, so every write is either atomic
//! (readers see the old file or the new file, never a mix) or, for the one
//! case where that is impossible (a single-file bind mount), preceded by a
//! backup copy.
//!
//! It also holds the one safe way to read such a file
//! ([`read_regular_capped`]) and to open a lock or audit file
//! ([`open_private`]): both refuse anything that is not a regular file
//! (FIFO, device, socket, directory) without blocking on it, and never read
//! more than a cap.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode for files we create: they hold secrets, so only the owner may read
/// them.
const NEW_FILE_MODE: u32 = 0o600;

/// Suffix appended to the file name for the backup made by
/// [`WriteMode::InPlace`]: `.env` → `.env.webex-token.bak`. The tool's name is
/// in it so a user's own `.env.bak` is never overwritten.
pub const BACKUP_SUFFIX: &str = ".webex-token.bak";

/// How to replace a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Temp file in the same directory + rename over the target (default).
    #[default]
    Atomic,
    /// Overwrite the file's contents in place, after writing a backup copy
    /// next to it. Only for files that cannot be renamed over (single-file
    /// Docker/Kubernetes bind mounts).
    InPlace,
}

/// What a path that is not a regular file is instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    /// A symbolic link (only reported where links are not followed).
    Symlink,
    Other,
}

impl FileKind {
    /// `None` for a regular file.
    pub fn of(file_type: fs::FileType) -> Option<FileKind> {
        Some(if file_type.is_file() {
            return None;
        } else if file_type.is_dir() {
            FileKind::Directory
        } else if file_type.is_fifo() {
            FileKind::Fifo
        } else if file_type.is_char_device() {
            FileKind::CharDevice
        } else if file_type.is_block_device() {
            FileKind::BlockDevice
        } else if file_type.is_socket() {
            FileKind::Socket
        } else if file_type.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        })
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::Symlink => "a symbolic link",
            FileKind::Other => "a special file",
        })
    }
}

/// Errors from [`read_regular_capped`]. Each names the path; none contains
/// file contents.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path (or the file a symlink points to) is not a regular file.
    #[error("{} is {kind}, not a regular file; refusing to read it", path.display())]
    NotRegular { path: PathBuf, kind: FileKind },
    /// The file is larger than the cap.
    #[error("{} is larger than {} (the limit for this file); refusing to read it", path.display(), human_size(*cap))]
    TooLarge { path: PathBuf, cap: u64 },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn human_size(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// Cap for the env file and the config file (contract: 1 MiB).
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Reads `path` (following symlinks) if it is a regular file, at most `cap`
/// bytes. `Ok(None)` when it does not exist (also a dangling symlink).
///
/// Never blocks and never reads unboundedly: the kind is checked with
/// `stat` first, the file is opened with `O_NONBLOCK` (so a FIFO swapped in
/// meanwhile does not block the open), checked again with `fstat` on the
/// open descriptor, and read through a `cap + 1` byte window.
pub fn read_regular_capped(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_regular = |kind| ReadError::NotRegular {
        path: path.to_path_buf(),
        kind,
    };
    match fs::metadata(path) {
        Ok(m) => {
            if let Some(kind) = FileKind::of(m.file_type()) {
                return Err(not_regular(kind));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        // Deleted between the two calls: treat as missing.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let meta = file.metadata().map_err(io_err)?;
    if let Some(kind) = FileKind::of(meta.file_type()) {
        return Err(not_regular(kind));
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            cap,
        });
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(1 << 20));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    // The file may have grown after the fstat.
    if buf.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            cap,
        });
    }
    Ok(Some(buf))
}

/// Opens (creating it with mode 0600 if missing) a private file of ours,
/// such as a lock file (`append == false`: read + write, never truncated) or
/// an audit log (`append == true`: read + append).
///
/// The last path component is never followed if it is a symlink (`O_NOFOLLOW`,
/// an error naming the path), and anything that is not a regular file is
/// refused (an `InvalidInput` error naming the path and what it is) without
/// blocking: the open uses `O_NONBLOCK` and the kind is checked before and,
/// with `fstat`, after opening.
pub fn open_private(path: &Path, append: bool) -> io::Result<File> {
    let refuse = |kind: FileKind| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is {kind}, not a regular file; refusing to open it{}",
                path.display(),
                if kind == FileKind::Symlink {
                    " (this file is never opened through a symbolic link; remove the link)"
                } else {
                    ""
                }
            ),
        )
    };
    match fs::symlink_metadata(path) {
        Ok(m) => {
            if let Some(kind) = FileKind::of(m.file_type()) {
                return Err(refuse(kind));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut opts = OpenOptions::new();
    opts.read(true).create(true).mode(NEW_FILE_MODE);
    if append {
        opts.append(true);
    } else {
        opts.write(true).truncate(false);
    }
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = match opts.open(path) {
        Ok(f) => f,
        // A symlink created between the check and the open.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(refuse(FileKind::Symlink)),
        Err(e) => return Err(e),
    };
    if let Some(kind) = FileKind::of(file.metadata()?.file_type()) {
        return Err(refuse(kind));
    }
    Ok(file)
}

/// Gives `file` the owner and group of `reference` (followed if a symlink),
/// for files a run creates beside the env file (lock, audit, recovery: the
/// contract wants them owned like the env file). Only root, or an owner
/// keeping its own uid, can do this; the caller decides whether EPERM matters.
pub fn match_owner(file: &File, reference: &Path) -> io::Result<()> {
    let m = fs::metadata(reference)?;
    std::os::unix::fs::fchown(file, Some(m.uid()), Some(m.gid()))
}

/// Errors from [`write_file`]. Each names the path and, where possible, what
/// to do next. None contains file contents.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {}: it is a directory", path.display())]
    IsDirectory { path: PathBuf },
    /// The target (or the file a symlink points to) is a FIFO, device,
    /// socket or other special file: it is never replaced or written.
    #[error(
        "cannot write {}: it is {kind}, not a regular file; nothing was written (point the path at a regular file)",
        path.display()
    )]
    NotRegular { path: PathBuf, kind: FileKind },
    #[error(
        "cannot write {}: permission denied while trying to {action}; check that the file and its directory {} are writable by this user (an atomic write creates a temporary file in that directory)",
        path.display(),
        dir.display()
    )]
    PermissionDenied {
        path: PathBuf,
        dir: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot replace {} by renaming a temporary file over it ({source}); this is typical when the file itself is bind-mounted into a container (Docker/Kubernetes); rerun with `--write-mode in-place`",
        path.display()
    )]
    RenameNotPossible {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot write the backup {} of {} before an in-place write ({source}); nothing was changed; make the directory writable",
        backup.display(),
        path.display()
    )]
    Backup {
        path: PathBuf,
        backup: PathBuf,
        #[source]
        source: Box<WriteError>,
    },
    #[error("cannot write {}: failed to {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Write `contents` to `path`.
///
/// * [`WriteMode::Atomic`]: write a temp file in the same directory, fsync
///   it, give it the mode (an existing file's mode is kept, a new file gets
///   0600), rename it over the target, fsync the directory. If `path` is a
///   symlink, its resolved target is replaced and the link is kept. If the
///   rename fails with EBUSY or EXDEV, [`WriteError::RenameNotPossible`]
///   explains that `--write-mode in-place` is needed. The temp file is
///   removed on any failure.
/// * [`WriteMode::InPlace`]: if the file exists, first write its current
///   contents to `<file name>` + [`BACKUP_SUFFIX`] next to it (mode 0600,
///   written atomically, fsynced; it is kept afterwards as the previous
///   version), then overwrite the file from offset 0 and `set_len` to the new
///   length (never truncating first, so the file is never empty), and fsync.
///   The file's mode is not changed. A missing file is created with 0600.
pub fn write_file(path: &Path, contents: &[u8], mode: WriteMode) -> Result<(), WriteError> {
    let target = resolve_symlinks(path)?;
    if let Ok(m) = fs::metadata(&target) {
        match FileKind::of(m.file_type()) {
            None => {}
            Some(FileKind::Directory) => return Err(WriteError::IsDirectory { path: target }),
            Some(kind) => return Err(WriteError::NotRegular { path: target, kind }),
        }
    }
    match mode {
        WriteMode::Atomic => write_atomic(&target, contents, None),
        WriteMode::InPlace => write_in_place(&target, contents),
    }
}

/// The backup path used by [`WriteMode::InPlace`] for `path`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(BACKUP_SUFFIX);
    path.with_file_name(name)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn io_err(path: &Path, action: &'static str, source: io::Error) -> WriteError {
    if source.kind() == io::ErrorKind::PermissionDenied {
        WriteError::PermissionDenied {
            path: path.to_path_buf(),
            dir: parent_dir(path),
            action,
            source,
        }
    } else {
        WriteError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

/// Follow symlinks ourselves (rather than `canonicalize`) so that a link to a
/// file that does not exist yet still resolves to where the file should be.
fn resolve_symlinks(path: &Path) -> Result<PathBuf, WriteError> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&current)
                    .map_err(|e| io_err(path, "read the symbolic link", e))?;
                current = if link.is_absolute() {
                    link
                } else {
                    parent_dir(&current).join(link)
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(io_err(path, "inspect the file", e)),
        }
    }
    Err(WriteError::Io {
        path: path.to_path_buf(),
        action: "resolve symbolic links",
        source: io::Error::other("too many levels of symbolic links"),
    })
}

/// How old a leftover temp file must be before a later write removes it.
/// A write takes milliseconds; a minute leaves any writer that is really
/// in flight (say, another env file's run sharing this config file) alone.
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes temp files of ours for `file_name` that a killed run (SIGKILL
/// between creating and renaming its temp file) left behind. They are
/// complete copies of a file full of secrets, 0600, but nobody needs them:
/// the real file is either the old or the new version.
fn remove_stale_temps(dir: &Path, file_name: &str) {
    let prefix = format!(".{file_name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(middle) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        // Exactly the random part tempfile adds (6 alphanumerics): never a
        // name of another shape, such as a user's `.env.local.tmp`.
        if middle.len() != 6 || !middle.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let old_enough = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_TEMP_AGE);
        if old_enough && entry.file_type().is_ok_and(|t| t.is_file()) {
            match fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(
                    "removed {}, left behind by an interrupted earlier write",
                    entry.path().display()
                ),
                Err(e) => tracing::debug!("could not remove {}: {e}", entry.path().display()),
            }
        }
    }
}

/// `force_mode`: mode to use regardless of an existing file (for backups).
fn write_atomic(target: &Path, contents: &[u8], force_mode: Option<u32>) -> Result<(), WriteError> {
    // Same directory as the target: rename(2) is only atomic within one
    // filesystem, and a temp file elsewhere (e.g. /tmp) may be on another.
    let dir = parent_dir(target);
    let existing = match fs::metadata(target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(target, "inspect the file", e)),
    };
    let mode = force_mode.unwrap_or_else(|| {
        existing
            .as_ref()
            .map_or(NEW_FILE_MODE, |m| m.permissions().mode() & 0o7777)
    });

    let file_name = target.file_name().unwrap_or_default().to_string_lossy();
    remove_stale_temps(&dir, &file_name);
    // tempfile creates the file with 0600, so the secret is never readable
    // by others, not even for a moment; it is deleted when `tmp` is dropped
    // on any error path below.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| io_err(target, "create a temporary file in its directory", e))?;

    tmp.write_all(contents)
        .map_err(|e| io_err(target, "write the temporary file", e))?;

    // Keep the owner and group of an existing file; a new file takes its
    // directory's, so one `sudo webex-token refresh` on a fresh setup does
    // not leave a root-owned 0600 env file the service user cannot read.
    // Best effort: only root (or an owner keeping its own uid) can do this;
    // otherwise the file is owned by the user running the tool, as an
    // editor would leave it.
    if force_mode.is_none() {
        let owner = match &existing {
            Some(m) => Some((m.uid(), m.gid())),
            None => fs::metadata(&dir).ok().map(|m| (m.uid(), m.gid())),
        };
        if let Some((uid, gid)) = owner {
            let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid));
        }
    }
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(|e| io_err(target, "set the temporary file's mode", e))?;
    // fsync before the rename: otherwise a crash could leave the new name
    // pointing at a file whose data never reached the disk (empty file).
    tmp.as_file()
        .sync_all()
        .map_err(|e| io_err(target, "flush the temporary file to disk", e))?;

    if let Err(e) = tmp.persist(target) {
        // `e.file` is dropped here, which removes the temp file.
        let source = e.error;
        return Err(match source.kind() {
            io::ErrorKind::ResourceBusy | io::ErrorKind::CrossesDevices => {
                WriteError::RenameNotPossible {
                    path: target.to_path_buf(),
                    source,
                }
            }
            _ => io_err(target, "rename the temporary file over it", source),
        });
    }
    sync_dir(&dir, target)
}

/// fsync the directory: the rename (or creation) is a change to the
/// directory, and it is only durable once the directory itself is flushed.
fn sync_dir(dir: &Path, target: &Path) -> Result<(), WriteError> {
    let d = File::open(dir).map_err(|e| io_err(target, "open its directory to flush it", e))?;
    match d.sync_all() {
        Ok(()) => Ok(()),
        // Some filesystems do not support fsync on directories.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(io_err(target, "flush its directory to disk", e)),
    }
}

/// The most an in-place write reads back for its backup copy.
const IN_PLACE_BACKUP_CAP: u64 = 64 << 20;

fn write_in_place(target: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let current = match read_regular_capped(target, IN_PLACE_BACKUP_CAP) {
        Ok(c) => c,
        Err(ReadError::NotRegular { kind, .. }) => {
            return Err(WriteError::NotRegular {
                path: target.to_path_buf(),
                kind,
            });
        }
        Err(ReadError::TooLarge { cap, .. }) => {
            return Err(io_err(
                target,
                "read it for the backup",
                io::Error::other(format!("it is larger than {}", human_size(cap))),
            ));
        }
        Err(ReadError::Io { source, .. }) => {
            return Err(io_err(target, "read it for the backup", source));
        }
    };

    let Some(current) = current else {
        // Nothing to back up; create it 0600 (it holds secrets).
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(NEW_FILE_MODE)
            .open(target)
            .map_err(|e| io_err(target, "create it", e))?;
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err(target, "write it", e))?;
        return sync_dir(&parent_dir(target), target);
    };

    // The backup holds the same secrets, hence 0600 whatever the file's mode;
    // it is written atomically so an old backup is never half-replaced.
    let backup = backup_path(target);
    write_atomic(&backup, &current, Some(NEW_FILE_MODE)).map_err(|e| WriteError::Backup {
        path: target.to_path_buf(),
        backup: backup.clone(),
        source: Box::new(e),
    })?;

    // No O_TRUNC: truncating first would leave an empty file (and no token)
    // if we crash; write over the old bytes, then cut off any excess.
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(target)
        .map_err(|e| io_err(target, "open it for writing", e))?;
    // Swapped for a special file since the backup was read: leave it alone.
    let meta = f
        .metadata()
        .map_err(|e| io_err(target, "inspect the file", e))?;
    if let Some(kind) = FileKind::of(meta.file_type()) {
        return Err(WriteError::NotRegular {
            path: target.to_path_buf(),
            kind,
        });
    }
    f.write_all(contents).map_err(|e| {
        io_err(
            target,
            "write it in place (the previous contents are in the backup)",
            e,
        )
    })?;
    f.set_len(contents.len() as u64)
        .map_err(|e| io_err(target, "truncate it to the new length", e))?;
    f.sync_all()
        .map_err(|e| io_err(target, "flush it to disk", e))?;
    Ok(())
}

/// Gives a file this run created the owner and group of `reference` (the
/// env file, or its directory before the env file exists), so one run as
/// root does not leave files the service user cannot open. Without the
/// privilege to change owners this is a no-op: the file is ours already.
pub fn adopt_owner(file: &File, reference: &Path) {
    let reference = if reference.exists() {
        reference
    } else {
        match reference.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => return,
        }
    };
    if let Err(e) = match_owner(file, reference)
        && e.kind() != std::io::ErrorKind::PermissionDenied
    {
        tracing::debug!("could not match the owner of {}: {e}", reference.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn running_as_root(dir: &Path) -> bool {
        let probe = dir.join("probe");
        fs::write(&probe, b"").unwrap();
        let root = fs::metadata(&probe).unwrap().uid() == 0;
        fs::remove_file(probe).unwrap();
        root
    }

    #[test]
    fn new_file_gets_0600_and_no_temp_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        write_file(&p, b"A=1\n", WriteMode::Atomic).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"A=1\n");
        assert_eq!(mode_of(&p), 0o600);
        assert_eq!(names(dir.path()), vec![".env"]);
    }

    #[test]
    fn existing_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        write_file(&p, b"new", WriteMode::Atomic).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(mode_of(&p), 0o640);
        assert_eq!(names(dir.path()), vec![".env"]);
    }

    #[test]
    fn symlink_is_kept_and_target_updated() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        fs::create_dir(&real_dir).unwrap();
        let target = real_dir.join("secrets.env");
        fs::write(&target, b"old").unwrap();
        fs::set_permissions(&target, Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join(".env");
        symlink("real/secrets.env", &link).unwrap(); // relative link
        write_file(&link, b"new", WriteMode::Atomic).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_link(&link).unwrap(),
            PathBuf::from("real/secrets.env")
        );
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(mode_of(&target), 0o640);
        assert_eq!(names(&real_dir), vec!["secrets.env"]);

        // A dangling link creates its target.
        let dangling = dir.path().join("dangling");
        symlink(real_dir.join("new.env"), &dangling).unwrap();
        write_file(&dangling, b"x", WriteMode::Atomic).unwrap();
        assert_eq!(fs::read(real_dir.join("new.env")).unwrap(), b"x");
        assert_eq!(mode_of(&real_dir.join("new.env")), 0o600);
    }

    #[test]
    fn failures_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();

        // Parent is a regular file: cannot even create the temp file.
        let file = dir.path().join("plain");
        fs::write(&file, b"keep").unwrap();
        let err = write_file(&file.join(".env"), b"x", WriteMode::Atomic).unwrap_err();
        assert!(err.to_string().contains("plain/.env"), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"keep");

        // Target is a directory.
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("inner"), b"").unwrap();
        let err = write_file(&sub, b"x", WriteMode::Atomic).unwrap_err();
        assert!(matches!(err, WriteError::IsDirectory { .. }), "{err}");

        // The rename itself fails (a non-empty directory cannot be replaced
        // by a file): the temp file was written and must be removed again.
        let err = write_atomic(&sub, b"x", None).unwrap_err();
        assert!(err.to_string().contains("rename"), "{err}");
        assert_eq!(names(dir.path()), vec!["plain", "sub"]);

        // Read-only directory. Root ignores directory permissions, so this
        // part only runs as an ordinary user.
        if !running_as_root(dir.path()) {
            let ro = dir.path().join("ro");
            fs::create_dir(&ro).unwrap();
            fs::write(ro.join(".env"), b"old").unwrap();
            fs::set_permissions(&ro, Permissions::from_mode(0o500)).unwrap();
            let err = write_file(&ro.join(".env"), b"new", WriteMode::Atomic).unwrap_err();
            fs::set_permissions(&ro, Permissions::from_mode(0o700)).unwrap();
            assert!(matches!(err, WriteError::PermissionDenied { .. }), "{err}");
            assert!(err.to_string().contains("writable"), "{err}");
            assert_eq!(names(&ro), vec![".env"]);
            assert_eq!(fs::read(ro.join(".env")).unwrap(), b"old");
        }
    }

    #[test]
    fn stale_temp_files_of_killed_runs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(".env");
        let stale = dir.path().join("..env.AbC123.tmp");
        let fresh = dir.path().join("..env.XyZ789.tmp");
        let other = dir.path().join(".env.local.tmp");
        for p in [&stale, &fresh, &other] {
            fs::write(p, b"SECRET=1").unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        fs::File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(old)
            .unwrap();
        write_file(&target, b"A=1\n", WriteMode::Atomic).unwrap();
        assert!(!stale.exists(), "an old leftover is removed");
        assert!(
            fresh.exists(),
            "a recent one may belong to a writer in flight"
        );
        assert!(other.exists(), "names of another shape are never touched");
    }

    #[test]
    fn rename_not_possible_message_names_in_place_mode() {
        let err = WriteError::RenameNotPossible {
            path: PathBuf::from("/app/.env"),
            source: io::Error::from(io::ErrorKind::ResourceBusy),
        };
        let msg = err.to_string();
        assert!(msg.starts_with("cannot replace /app/.env"), "{msg}");
        assert!(msg.contains("--write-mode in-place"), "{msg}");
    }

    #[test]
    fn in_place_writes_backup_and_keeps_inode_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        fs::write(&p, b"A=a-long-old-value\n").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        let inode = fs::metadata(&p).unwrap().ino();

        write_file(&p, b"A=short\n", WriteMode::InPlace).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"A=short\n");
        assert_eq!(mode_of(&p), 0o640);
        assert_eq!(
            fs::metadata(&p).unwrap().ino(),
            inode,
            "same file, not replaced"
        );

        let bak = dir.path().join(".env.webex-token.bak");
        assert_eq!(backup_path(&p), bak);
        assert_eq!(fs::read(&bak).unwrap(), b"A=a-long-old-value\n");
        assert_eq!(mode_of(&bak), 0o600);
        assert_eq!(names(dir.path()), vec![".env", ".env.webex-token.bak"]);

        // Growing works too, and the backup then holds the previous version.
        write_file(&p, b"A=a-much-longer-new-value\n", WriteMode::InPlace).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"A=a-much-longer-new-value\n");
        assert_eq!(fs::read(&bak).unwrap(), b"A=short\n");
    }

    #[test]
    fn in_place_creates_missing_file_0600_without_backup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        write_file(&p, b"A=1\n", WriteMode::InPlace).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"A=1\n");
        assert_eq!(mode_of(&p), 0o600);
        assert_eq!(names(dir.path()), vec![".env"]);
    }

    // ---- special files -------------------------------------------------

    /// Special files made inside `dir` (never a real /dev path): a FIFO, a
    /// UNIX socket, a directory and, when mknod is allowed (root), a
    /// character device with the numbers of /dev/null.
    fn special_files(dir: &Path) -> (Vec<(PathBuf, FileKind)>, std::os::unix::net::UnixListener) {
        let fifo = dir.join("fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo failed");
        let sock = dir.join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let sub = dir.join("subdir");
        fs::create_dir(&sub).unwrap();
        let mut v = vec![
            (fifo, FileKind::Fifo),
            (sock, FileKind::Socket),
            (sub, FileKind::Directory),
        ];
        let dev = dir.join("null");
        let made = std::process::Command::new("mknod")
            .arg(&dev)
            .args(["c", "1", "3"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if made {
            v.push((dev, FileKind::CharDevice));
        }
        (v, listener)
    }

    /// The kind of `p` itself (links not followed) and its device number.
    fn kind_of(p: &Path) -> (Option<FileKind>, u64) {
        let m = fs::symlink_metadata(p).unwrap();
        (FileKind::of(m.file_type()), m.rdev())
    }

    /// Runs `f` on another thread and fails (instead of hanging) if it has
    /// not returned within 10 s: opening a FIFO for reading blocks.
    fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("blocked on a special file")
    }

    #[test]
    fn special_files_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _listener) = special_files(dir.path());
        for (p, kind) in files {
            let link = dir.path().join(format!("link-to-{kind:?}"));
            symlink(&p, &link).unwrap();
            let before = kind_of(&p);
            assert_eq!(before.0, Some(kind));
            for target in [p.clone(), link.clone()] {
                let t = target.clone();
                let err = within_10s(move || read_regular_capped(&t, MAX_FILE_SIZE)).unwrap_err();
                assert!(
                    matches!(&err, ReadError::NotRegular { kind: k, .. } if *k == kind),
                    "{err}"
                );
                let msg = err.to_string();
                assert!(msg.contains(&target.display().to_string()), "{msg}");
                assert!(
                    msg.contains(&format!("is {kind}, not a regular file")),
                    "{msg}"
                );

                for mode in [WriteMode::Atomic, WriteMode::InPlace] {
                    let t = target.clone();
                    let err = within_10s(move || write_file(&t, b"A=1\n", mode)).unwrap_err();
                    match (kind, &err) {
                        (FileKind::Directory, WriteError::IsDirectory { .. }) => {}
                        (_, WriteError::NotRegular { kind: k, path }) if *k == kind => {
                            assert_eq!(path, &p);
                        }
                        _ => panic!("{kind:?} via {}: {err}", target.display()),
                    }
                    assert!(err.to_string().contains(&p.display().to_string()), "{err}");
                }

                for append in [false, true] {
                    let t = target.clone();
                    let err = within_10s(move || open_private(&t, append)).unwrap_err();
                    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
                    let want = if target == link {
                        FileKind::Symlink
                    } else {
                        kind
                    };
                    assert!(
                        err.to_string()
                            .contains(&format!("is {want}, not a regular file")),
                        "{err}"
                    );
                }
                assert_eq!(kind_of(&p), before, "{} changed", p.display());
            }
            assert!(
                fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
        }
        // Nothing was created beside them (no temp file, no backup).
        let left: Vec<String> = names(dir.path())
            .into_iter()
            .filter(|n| n.contains("tmp") || n.contains("bak"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn read_regular_capped_reads_missing_and_caps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        assert!(read_regular_capped(&p, 10).unwrap().is_none());
        let dangling = dir.path().join("dangling");
        symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(read_regular_capped(&dangling, 10).unwrap().is_none());

        fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_regular_capped(&p, 10).unwrap().unwrap(), b"0123456789");
        let err = read_regular_capped(&p, 9).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { cap: 9, .. }), "{err}");
        assert!(
            err.to_string().contains(".env is larger than 9 bytes"),
            "{err}"
        );
        let big = dir.path().join("big");
        fs::write(&big, vec![b'x'; (MAX_FILE_SIZE + 1) as usize]).unwrap();
        let msg = read_regular_capped(&big, MAX_FILE_SIZE)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("larger than 1 MiB"), "{msg}");

        // A symlink to a regular file reads through.
        let link = dir.path().join("link");
        symlink(&p, &link).unwrap();
        assert_eq!(
            read_regular_capped(&link, 10).unwrap().unwrap(),
            b"0123456789"
        );
    }

    #[test]
    fn open_private_creates_0600_never_follows_links_never_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(".env.lock");
        drop(open_private(&lock, false).unwrap());
        assert_eq!(mode_of(&lock), 0o600);
        fs::write(&lock, b"keep").unwrap();
        drop(open_private(&lock, false).unwrap());
        assert_eq!(fs::read(&lock).unwrap(), b"keep", "not truncated");

        let audit = dir.path().join(".env.audit.jsonl");
        let mut f = open_private(&audit, true).unwrap();
        f.write_all(b"one\n").unwrap();
        drop(f);
        let mut f = open_private(&audit, true).unwrap();
        f.write_all(b"two\n").unwrap();
        assert_eq!(fs::read(&audit).unwrap(), b"one\ntwo\n");
        assert_eq!(mode_of(&audit), 0o600);

        // A symlink, to an existing file or to a missing one, is refused and
        // neither end is touched.
        let victim = dir.path().join("victim");
        fs::write(&victim, b"v").unwrap();
        let l1 = dir.path().join("l1");
        symlink(&victim, &l1).unwrap();
        let l2 = dir.path().join("l2");
        symlink(dir.path().join("missing"), &l2).unwrap();
        for l in [&l1, &l2] {
            for append in [false, true] {
                let err = open_private(l, append).unwrap_err();
                assert!(err.to_string().contains("symbolic link"), "{err}");
            }
        }
        assert_eq!(fs::read(&victim).unwrap(), b"v");
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn match_owner_copies_uid_and_gid() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join(".env");
        fs::write(&env, b"A=1\n").unwrap();
        if running_as_root(dir.path()) {
            std::os::unix::fs::chown(&env, Some(4321), Some(8765)).unwrap();
        }
        let want = fs::metadata(&env).unwrap();
        let lock = dir.path().join(".env.lock");
        let f = open_private(&lock, false).unwrap();
        match_owner(&f, &env).unwrap();
        let got = fs::metadata(&lock).unwrap();
        assert_eq!((got.uid(), got.gid()), (want.uid(), want.gid()));
        assert!(match_owner(&f, &dir.path().join("missing")).is_err());
    }
}
