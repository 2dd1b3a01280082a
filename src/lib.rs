//! webex-token library (not a stable API).
