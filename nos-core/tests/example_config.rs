//! The worked example in `examples/router.yaml` loads, validates and round-trips.

use nos_core::config::Config;

const EXAMPLE: &str = include_str!("../../examples/router.yaml");

#[test]
fn example_loads_and_validates() {
    let config = match Config::from_yaml(EXAMPLE) {
        Ok(c) => c,
        Err(e) => panic!("examples/router.yaml is invalid:\n{e}"),
    };
    assert_eq!(config.system.hostname, "edge-1");
    assert_eq!(config.ports.len(), 4);
    assert_eq!(config.vlans.len(), 2);
    assert_eq!(config.vrfs.len(), 1);
    assert!(config
        .interfaces
        .iter()
        .any(|i| i.port.is_some() && i.vlan.is_some()));
    assert!(config.static_routes.iter().any(|r| r.blackhole));
    assert!(config.static_routes.iter().any(|r| r.next_hops.len() > 1));
    assert!(config
        .static_routes
        .iter()
        .any(|r| r.prefix.addr().is_ipv6()));
    assert_eq!(config.bgp.as_ref().map(|b| b.neighbors.len()), Some(2));
}

#[test]
fn example_round_trips_through_canonical_yaml() {
    let config = Config::from_yaml(EXAMPLE).unwrap();
    let yaml = config.to_yaml();
    let again = match Config::from_yaml(&yaml) {
        Ok(c) => c,
        Err(e) => panic!("the canonical YAML does not load:\n{e}\n---\n{yaml}"),
    };
    assert_eq!(again, config);
    // Canonical means stable: rendering again gives the same text.
    assert_eq!(again.to_yaml(), yaml);
}
