//! Simulation: many routers on a virtual clock ([`harness`]), the topologies
//! they run on ([`topology`]), and the scenarios run on them ([`scenario`]).

pub mod harness;
pub mod scenario;
pub mod topology;
