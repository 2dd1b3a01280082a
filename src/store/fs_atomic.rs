//! Safe file writes for the env file and the config file.
//!
//! Both files hold secrets (refresh tokens), and a half-written file could
//! lose the only refresh token that works, so every write is either atomic
//! (readers see the old file or the new file, never a mix) or, for the one
//! case where that is impossible (a single-file bind mount), preceded by a
//! backup copy.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// Errors from [`write_file`]. Each names the path and, where possible, what
/// to do next. None contains file contents.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {}: it is a directory", path.display())]
    IsDirectory { path: PathBuf },
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
    match fs::metadata(&target) {
        Ok(m) if m.is_dir() => return Err(WriteError::IsDirectory { path: target }),
        _ => {}
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

    // Keep the owner and group of an existing file (best effort: only root
    // or the owner itself can do this; otherwise the file ends up owned by
    // the user running the tool, which is what an editor would do too).
    if let Some(m) = &existing
        && force_mode.is_none()
    {
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid()));
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

fn write_in_place(target: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let current = match fs::read(target) {
        Ok(c) => Some(c),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(target, "read it for the backup", e)),
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
        .open(target)
        .map_err(|e| io_err(target, "open it for writing", e))?;
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
}
