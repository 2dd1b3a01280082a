//! TEMPORARY stand-in (replaced by the real atomic writer).
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Atomic,
    InPlace,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("could not write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn write_file(path: &Path, contents: &[u8], _mode: WriteMode) -> Result<(), WriteError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |e| WriteError::Io {
        path: path.into(),
        source: e,
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(contents).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
