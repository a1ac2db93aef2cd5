//! Placeholder until the lecture's baselines land (helper E's module
//! replaces this file): no system is built yet.

use rand::RngCore;

use crate::sim::model::{Graph, Model};

/// Settings the baselines read.
#[derive(Clone, Debug)]
pub struct Params {
    pub ttl: u32,
    pub degree: usize,
    pub dims: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            ttl: 7,
            degree: 10,
            dims: 2,
        }
    }
}

/// The baselines' names.
pub const SYSTEMS: &[&str] = &[];

/// The baseline called `name`, or None.
pub fn build(
    _name: &str,
    _graph: &Graph,
    _params: &Params,
    _rng: &mut dyn RngCore,
) -> Option<Box<dyn Model>> {
    None
}
