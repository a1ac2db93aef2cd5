//! The tests that start no node process (the library, the simulator, the
//! audit, links over loopback, short `veil sim`/`trace` commands), as one
//! test binary: each integration test binary links the whole crate, and
//! one link instead of nineteen saves minutes of a fresh build. Tests are
//! named by their file: `cargo test --test library audit::` runs
//! tests/library/audit.rs. Tests that run node processes stay in their own
//! binaries (tests/*.rs), one binary at a time.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod audit_canaries;
mod baselines;
mod bench_modes;
mod content;
mod decoder_props;
mod formats;
mod gen_bounds;
mod layout;
mod link;
mod malformed_input;
mod put_retry;
mod routing_props;
mod seed_example;
mod sim_anonymity;
mod sim_churn;
mod sim_engine;
mod sim_swap;
mod splitfile;
mod ssk_routing;
mod swap_protocol;
mod tunnel_props;
