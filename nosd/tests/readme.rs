//! The configuration examples in README.md are valid, so the documentation
//! cannot drift from the format.

use nos_core::config::Config;

#[test]
fn every_yaml_block_in_the_readme_is_a_valid_configuration() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("unterminated yaml block");
        if let Err(e) = Config::from_yaml(&body[..end]) {
            panic!(
                "README yaml block {blocks} is invalid:\n{e}\n---\n{}",
                &body[..end]
            );
        }
        blocks += 1;
        rest = &body[end + 3..];
    }
    assert!(blocks >= 2, "README lost its configuration examples");
}

#[test]
fn the_example_file_is_the_readme_worked_example() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/router.yaml"
    ))
    .unwrap();
    assert!(
        readme.contains(example.trim_end()),
        "README's worked example differs from examples/router.yaml"
    );
}
