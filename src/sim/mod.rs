//! Simulation: many routers on a virtual clock ([`harness`]), the topologies
//! they run on ([`topology`]), the scenarios run on them ([`scenario`]), and
//! the interface every system `veil sim` compares answers to ([`model`]).

pub mod baselines;
pub mod harness;
pub mod model;
pub mod scenario;
pub mod topology;
