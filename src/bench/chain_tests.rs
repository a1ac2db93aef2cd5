use super::*;

#[test]
fn only_a_positive_slope_within_the_target_meets_the_latency_target() {
    assert!(latency_met(0.03, 0.02));
    assert!(!latency_met(0.031, 0.02));
    assert!(
        !latency_met(-3.86, 0.021),
        "a falling slope is no per-hop figure"
    );
    assert!(!latency_met(0.0, 0.02));
    assert!(!latency_met(0.01, 0.0));
}

#[test]
fn hop_crypto_is_two_aead_passes_and_a_hash_over_one_block() {
    let mib = BLOCK_LEN as f64 / MIB;
    let ms = hop_crypto_ms(1000.0, 500.0);
    assert!((ms - mib * (2.0 / 500.0 + 1.0 / 1000.0) * 1000.0).abs() < 1e-12);
}
