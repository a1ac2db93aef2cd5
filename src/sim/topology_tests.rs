use super::*;

#[test]
fn errors_are_specific() {
    assert!(matches!(
        Topology::parse("nodes = {}"),
        Err(TopologyError::Empty)
    ));
    assert!(matches!(
        Topology::parse("edges=[[\"A\",\"Z\"]]\n[nodes]\nA={}"),
        Err(TopologyError::UnknownNode(n)) if n == "Z"
    ));
    assert!(matches!(
        Topology::parse("[nodes]\nA={location=1.5}"),
        Err(TopologyError::BadLocation { .. })
    ));
    assert!(matches!(
        Topology::parse("edges=[[\"A\",\"A\"]]\n[nodes]\nA={}"),
        Err(TopologyError::SelfLoop(_))
    ));
    assert!(matches!(
        Topology::parse("[nodes\n"),
        Err(TopologyError::Syntax(_))
    ));
}

#[test]
fn generated_topologies_are_connected_and_reparse() {
    for shape in [Shape::Ring, Shape::Random, Shape::SmallWorld] {
        let t = generate(32, 4, shape, 9).unwrap();
        assert!(t.is_connected(), "{shape:?}");
        let mean = 2.0 * t.edges.len() as f64 / 32.0;
        assert!((3.5..=4.5).contains(&mean), "{shape:?} mean degree {mean}");
        let back = Topology::parse(&t.to_toml()).unwrap();
        assert_eq!(back.edges, t.edges);
        assert_eq!(back.nodes.len(), 32);
        assert_eq!(generate(32, 4, shape, 9).unwrap(), t, "deterministic");
    }
}
