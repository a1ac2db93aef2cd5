//! Simulation: many routers on a virtual clock, and the topologies they run on.

pub mod harness;
pub mod topology;
