//! Integration tests: the real binary, in temp dirs, against a local HTTP
//! server standing in for Webex. One test binary for all (faster links).

mod common;

mod chain_paths;
mod commands;
mod completions;
mod datasources;
mod docs;
mod etcd_cluster;
mod files;
mod fleet;
mod hardening;
mod health_abuse;
mod hints;
mod init;
mod inprocess;
mod json_schema;
mod orgs;
mod python_sample;
mod secrets;
mod setup_oauth;
mod sim_e2e;
mod snapshots;
mod trust;
mod watch;
