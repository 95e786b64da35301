//! Integration tests over real HTTP against a real server on a temporary data directory.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod api_experiments;
