//! Integration tests over real HTTP against a real server on a temporary data directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod api_errors;
mod api_experiments;
mod api_extended;
mod api_grants;
mod api_openapi;
mod api_subresources;
mod archives;
mod audit;
mod booking_changes;
mod booking_feeds;
mod booking_requests;
mod booking_zones;
mod bookings;
mod cli;
mod eln;
mod fault_proxy;
mod pdf;
mod policy_matrix;
mod proof_locks;
mod replica_at_rest;
mod resources;
mod search;
mod signatures;
mod stock;
mod sweep;
mod sync_blobs;
mod sync_copy;
mod sync_fast_push;
mod sync_faults;
mod sync_file_exports;
mod sync_files;
mod sync_known_files;
mod sync_noop;
mod sync_stalls;
mod templates_fields;
mod timestamps;
mod ui_flows;
mod uploads;
