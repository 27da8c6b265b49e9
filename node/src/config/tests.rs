//! Unit tests of the daemon config.

use super::*;

#[test]
fn example_file_matches_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let example: toml::Value = toml::from_str(&text).unwrap();
    let defaults: toml::Value = toml::from_str(&Config::default().to_toml()).unwrap();
    assert_eq!(
        example, defaults,
        "config.example.toml is out of step with Config::default()"
    );
    assert_eq!(Config::load(&path).unwrap(), Config::default());
}

#[test]
fn unknown_key_is_named() {
    let err = Config::from_toml("mdns = true\nbogus_key = 3\n", "x.toml".as_ref()).unwrap_err();
    assert!(err.to_string().contains("bogus_key"), "{err}");
    let err = Config::from_toml("[host]\npricez = {}\n", "x.toml".as_ref()).unwrap_err();
    assert!(err.to_string().contains("pricez"), "{err}");
}

#[test]
fn credits_parse_exactly_and_print_back() {
    assert_eq!(Credits::parse_decimal("0.03").unwrap(), Credits(30_000));
    assert_eq!(Credits::parse_decimal("12").unwrap(), Credits(12_000_000));
    assert_eq!(Credits::parse_decimal(".5").unwrap(), Credits(500_000));
    assert!(Credits::parse_decimal("0.0000001").is_err());
    assert!(Credits::parse_decimal("-1").is_err());
    assert_eq!(Credits(30_000).to_string(), "0.03");
    let c: BTreeMap<String, Credits> = toml::from_str("a = 0.03\nb = 2\nc = \"0.000001\"").unwrap();
    assert_eq!(c["a"], Credits(30_000));
    assert_eq!(c["b"], Credits(2_000_000));
    assert_eq!(c["c"], Credits(1));
}

#[test]
fn exec_without_program_is_invalid() {
    let c = Config::from_toml("[executors.x]\nkind = \"exec\"\n", "x.toml".as_ref()).unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("program"));
}
