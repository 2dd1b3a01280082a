//! webex-token library (not a stable API).

pub mod env_file;
pub mod fs_atomic;
