//! The shardmq node as a library: configuration, boot and wiring of the shards, node links,
//! security, the admin endpoint, and the `shardmq` command line ([`cli`]). The binary
//! (`src/main.rs`) is a thin wrapper over [`cli::main`]; what does not need sockets is tested
//! here, in each module's tests.

#![forbid(unsafe_code)]

mod acl_cache;
mod admin;
mod admin_http;
mod admin_token;
mod auth_http;
mod bridge;
mod check_system;
pub mod cli;
mod client_stream;
mod cluster;
pub mod config;
mod connect_auth;
mod connection;
mod context;
mod ctl;
mod drain;
mod enhanced_auth;
mod event_webhook;
mod import_mosquitto;
mod link_certs;
mod link_security;
mod listeners;
mod login_guard;
mod metrics;
mod overload;
mod reload;
mod security;
mod server;
mod signal;
