//! `veil bench`'s per-mode figures run end to end: a tiny get in each mode
//! over the bench network, one figure each and the tunnel/none ratio.
//! Timings are printed by the bench, never asserted here.

use veil::bench::modes::{self, ModesOptions, NETWORK_NODES};
use veil::routing::Anonymity;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_reports_a_figure() {
    let options = ModesOptions {
        sizes: vec![40 * 1024, 100_000],
        repeats: 1,
        ..ModesOptions::default()
    };
    let steps = std::sync::Mutex::new(Vec::new());
    let run = modes::run(&options, |s| steps.lock().unwrap().push(s.to_string()));
    let report = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the bench finishes within 2 minutes")
        .expect("the bench runs");
    assert_eq!(report.nodes, NETWORK_NODES);
    assert_eq!(report.figures.len(), 3 * 2, "{:?}", report.figures);
    for mode in [Anonymity::None, Anonymity::Freenet, Anonymity::Tunnel] {
        for size in [40 * 1024, 100_000] {
            let f = report
                .figures
                .iter()
                .find(|f| f.mode == mode.as_str() && f.size_bytes == size)
                .unwrap_or_else(|| panic!("no figure for {mode} {size}"));
            assert_eq!(f.gets, 1);
            assert!(f.seconds_median > 0.0 && f.mib_per_s > 0.0, "{f:?}");
        }
    }
    let check = report.tunnel_vs_none.as_ref().expect("a tunnel/none ratio");
    assert_eq!(
        check.size_bytes, 100_000,
        "the ratio is taken at the largest size"
    );
    assert_eq!(check.met, check.ratio <= check.target);
    let text = report.render_text();
    assert!(text.contains("tunnel/none for"), "{text}");
    assert!(text.contains("MET") || text.contains("MISSED"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["figures"].as_array().map(Vec::len), Some(6));
    // Progress went to the callback: a start and a get line per mode.
    let steps = steps.into_inner().unwrap();
    assert_eq!(steps.iter().filter(|s| s.contains("starting")).count(), 3);
    assert_eq!(steps.iter().filter(|s| s.contains(" get ")).count(), 6);
}
