//! TEMPORARY stand-in (replaced by the format-preserving editor).
use std::path::{Path, PathBuf};

pub struct EnvDocument {
    raw: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("env file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("env file {} could not be read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl EnvDocument {
    pub fn parse(bytes: Vec<u8>, path: &Path) -> Result<Self, EnvFileError> {
        for item in dotenvy::from_read_iter(&bytes[..]) {
            item.map_err(|e| EnvFileError::Parse {
                path: path.into(),
                message: e.to_string(),
            })?;
        }
        Ok(EnvDocument { raw: bytes })
    }
    pub fn empty() -> Self {
        EnvDocument { raw: Vec::new() }
    }
    pub fn get(&self, key: &str) -> Option<String> {
        dotenvy::from_read_iter(&self.raw[..])
            .flatten()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
    pub fn render_with(&self, updates: &[(&str, &str)]) -> Vec<u8> {
        let text = String::from_utf8_lossy(&self.raw);
        let mut out = String::new();
        for line in text.lines() {
            if updates
                .iter()
                .any(|(k, _)| line.starts_with(&format!("{k}=")))
            {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        for (k, v) in updates {
            out.push_str(&format!("{k}='{v}'\n"));
        }
        out.into_bytes()
    }
}

pub fn read(path: &Path) -> Result<Option<EnvDocument>, EnvFileError> {
    match std::fs::read(path) {
        Ok(b) => EnvDocument::parse(b, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EnvFileError::Io {
            path: path.into(),
            source: e,
        }),
    }
}
