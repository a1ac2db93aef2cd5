use super::*;

const BASE: &str = "listen = \"127.0.0.1:1\"\nclient = \"127.0.0.1:2\"\n";

#[test]
fn swapping_is_off_by_default_and_set_by_swap_and_its_table() {
    let plain: NodeConfig = toml::from_str(BASE).unwrap();
    assert!(!plain.swap);
    assert_eq!(plain.swapping, SwapConfig::default());
    // Defaults are not written back.
    assert!(!toml::to_string(&plain).unwrap().contains("swap"));
    let text = format!("{BASE}swap = true\n[swapping]\ninterval_ms = 500\npaused = true\n");
    let on: NodeConfig = toml::from_str(&text).unwrap();
    assert!(on.swap);
    assert_eq!(on.swapping.interval_ms, 500);
    assert!(on.swapping.paused);
    assert_eq!(on.swapping.walk_htl, SwapConfig::default().walk_htl);
    assert!(on.validate().is_ok());
    let again: NodeConfig = toml::from_str(&toml::to_string(&on).unwrap()).unwrap();
    assert_eq!(again, on);
}

#[test]
fn zero_swap_settings_and_unknown_keys_are_refused() {
    let zero: NodeConfig = toml::from_str(&format!("{BASE}[swapping]\nwalk_htl = 0\n")).unwrap();
    assert_eq!(
        zero.validate(),
        Err(InvalidSetting::Zero("swapping.walk_htl"))
    );
    assert!(toml::from_str::<NodeConfig>(&format!("{BASE}[swapping]\nwalk = 3\n")).is_err());
}
