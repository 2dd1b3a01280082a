//! Integration tests: the real binary, in temp dirs, against a local HTTP
//! server standing in for Webex. One test binary for all (faster links).

mod common;

mod agent_honesty;
mod chain_paths;
mod commands;
mod completions;
mod datasources;
mod docs;
mod etcd_cluster;
mod etcd_values;
mod files;
mod fleet;
mod hardening;
mod health_abuse;
mod hints;
mod init;
mod inprocess;
mod json_schema;
mod notify;
mod orgs;
mod python_sample;
mod reauth;
mod secrets;
mod setup_oauth;
mod sim_e2e;
mod snapshots;
mod trust;
mod watch;
