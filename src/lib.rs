//! `webex-token`: keeps Webex service-app tokens working without a person in
//! the loop.
//!
//! This library backs the `webex-token` binary and its tests. It is not a
//! stable API: anything here may change in any release.

pub mod app;
pub mod audit;
pub mod chain;
pub mod cli;
pub mod clock;
pub mod completions;
pub mod config;
pub mod datasources;
pub mod error;
pub mod names;
pub mod oauth_setup;
pub mod output;
pub mod secret;
pub mod settings;
pub mod store;
pub mod tokens;
pub mod webex;
