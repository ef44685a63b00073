//! The README's example must be the example that CI compiles, byte for byte.

#[test]
fn readme_shows_the_minimal_example_verbatim() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/minimal.rs");
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "sdk/README.md must contain sdk/examples/minimal.rs verbatim in a ```rust block"
    );
}
