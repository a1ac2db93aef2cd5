//! Simulation: many routers on a virtual clock ([`harness`]), the topologies
//! they run on ([`topology`]), the scenarios run on them ([`scenario`]), and
//! the interface every system `veil sim` compares answers to ([`model`]).
//!
//! `veil sim`: the discrete-event [`engine`] (the same router at 100,000
//! nodes), veil as a model ([`freenet`]), the lecture's [`baselines`], the
//! graphs they run on ([`graphs`]), one run ([`runner`]), the experiments
//! ([`experiments`]) and their plots ([`plot`]); location swapping on a
//! graph ([`swap`]); the engine's compact datastores ([`blocks`]);
//! nodes leaving and rejoining during a run ([`churn`]); the audit's
//! adversary on simulated runs ([`anonymity`]).

pub mod anonymity;
pub mod baselines;
pub mod blocks;
pub mod churn;
pub mod embed_net;
pub mod engine;
pub mod experiments;
pub mod freenet;
pub mod graphs;
pub mod harness;
pub mod latency;
pub mod model;
pub mod pitch_black;
pub mod plot;
mod report;
pub mod runner;
pub mod scenario;
pub mod swap;
mod swap_net;
pub mod topology;
