//! Compiles the protos under `proto/` with `protox` (a protobuf compiler in
//! Rust, so no system `protoc` is needed) and generates prost messages and
//! tonic client and server code from the resulting descriptors.

use std::error::Error;
use std::path::PathBuf;

/// The files compiled; their imports (google/protobuf/any.proto comes with
/// protox) are pulled in as needed.
const PROTOS: &[&str] = &[
    "p4/v1/p4runtime.proto",
    "p4/v1/p4data.proto",
    "p4/config/v1/p4info.proto",
    "p4/config/v1/p4types.proto",
    "google/rpc/status.proto",
    "google/rpc/code.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    for p in PROTOS {
        println!("cargo:rerun-if-changed=proto/{p}");
    }

    let mut compiler = protox::Compiler::new(["proto"]).map_err(|e| format!("{e:?}"))?;
    compiler.include_imports(true).include_source_info(true);
    compiler
        .open_files(PROTOS)
        .map_err(|e| format!("protox: {e:?}"))?;
    let fds = compiler.file_descriptor_set();

    // The descriptor set without source info, embedded in the crate for
    // reflection (text-format P4Info, for one).
    let mut bare = fds.clone();
    for f in &mut bare.file {
        f.source_code_info = None;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    std::fs::write(
        out.join("p4runtime_descriptor_set.bin"),
        prost::Message::encode_to_vec(&bare),
    )?;

    let mut config = tonic_prost_build::Config::new();
    // `prost::Name` impls, so messages pack into `Any` with the standard
    // "type.googleapis.com/<full name>" type URL.
    config
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
