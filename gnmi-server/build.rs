//! Compiles the gNMI and gNOI protos with protox (a protobuf compiler written
//! in Rust, so no system `protoc` is needed) and generates prost messages plus
//! tonic clients and servers from the resulting descriptor set.

use std::path::PathBuf;

/// The protos, relative to `proto/`, which is also the only include root
/// (the well-known `google/protobuf/*` files are built into protox).
const PROTOS: &[&str] = &[
    "gnmi_ext/gnmi_ext.proto",
    "gnmi/gnmi.proto",
    "gnoi/types/types.proto",
    "gnoi/common/common.proto",
    "gnoi/system/system.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
