//! How long a message takes on a simulated link: fixed, uniform or
//! log-normal, one value per link drawn from the run's seed
//! (`veil sim --latency`, the Shadow export's link latencies).

use std::str::FromStr;

use crate::routing::Time;
use crate::sim::model::NodeIx;

/// How long a message takes on a link, in virtual milliseconds. Each link
/// (both directions) gets one value, drawn once from the run's seed and the
/// two node indices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// Every link the same (the harness uses 10 ms).
    Fixed(Time),
    /// Uniform in `[min, max]`.
    Uniform { min: Time, max: Time },
    /// Log-normal with this median and shape `sigma`, clamped to
    /// `[1, 10 * median]` ms. The default: median 40 ms, sigma 0.5
    /// (most links 15–110 ms, a wide-area spread).
    LogNormal { median: f64, sigma: f64 },
}

impl Default for Latency {
    fn default() -> Self {
        Latency::LogNormal {
            median: 40.0,
            sigma: 0.5,
        }
    }
}

impl FromStr for Latency {
    type Err = String;

    /// `fixed:MS`, `uniform:MIN-MAX` or `lognormal:MEDIAN,SIGMA`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad latency {s:?} (fixed:10, uniform:5-100 or lognormal:40,0.5)");
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let num = |t: &str| {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        match kind {
            "fixed" => num(rest).map(|v| Latency::Fixed(v as Time)).ok_or_else(bad),
            "uniform" => {
                let (a, b) = rest.split_once('-').ok_or_else(bad)?;
                match (num(a), num(b)) {
                    (Some(a), Some(b)) if a <= b => Ok(Latency::Uniform {
                        min: a as Time,
                        max: b as Time,
                    }),
                    _ => Err(bad()),
                }
            }
            "lognormal" => {
                let (m, g) = rest.split_once(',').ok_or_else(bad)?;
                match (num(m), num(g)) {
                    (Some(median), Some(sigma)) if median >= 1.0 => {
                        Ok(Latency::LogNormal { median, sigma })
                    }
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }
}

/// SplitMix64: a fixed, well-mixed function of its input.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl Latency {
    /// The latency of the link between `a` and `b` in a run with `seed`.
    pub fn of_link(&self, seed: u64, a: NodeIx, b: NodeIx) -> Time {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let h = mix(seed ^ mix((u64::from(lo) << 32) | u64::from(hi)));
        match *self {
            Latency::Fixed(ms) => ms,
            Latency::Uniform { min, max } => min + h % (max - min + 1),
            Latency::LogNormal { median, sigma } => {
                // Box-Muller from two uniforms of the link's hash.
                let u1 = unit(h).max(f64::MIN_POSITIVE);
                let u2 = unit(mix(h));
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (median * (sigma * z).exp()).clamp(1.0, 10.0 * median) as Time
            }
        }
    }
}
