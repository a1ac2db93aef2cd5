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

#[test]
fn a_tunnel_path_counts_its_layers_and_fewer_hashes() {
    let plain = PathPasses::of(Anonymity::None);
    assert_eq!(plain, PathPasses::of(Anonymity::Freenet));
    assert_eq!((plain.aead, plain.stream, plain.hash), (9.0, 0.0, 8.0));
    // The shortest tunnel: 3 hops, the exit sealing, 2 relays' layers, the
    // originator checking and stripping 3; holder, exit and requester hash.
    let tunnel = PathPasses::of(Anonymity::Tunnel);
    assert_eq!((tunnel.aead, tunnel.stream, tunnel.hash), (13.0, 2.0, 6.0));
    let (aead, stream, sha) = (1000.0, 1500.0, 800.0);
    let expected = 2.0 / (13.0 / aead + 2.0 / stream + 6.0 / sha);
    assert!((tunnel.limit(2, aead, stream, sha) - expected).abs() < 1e-9);
    assert!(tunnel.limit(2, aead, stream, sha) < plain.limit(2, aead, stream, sha));
}
