//! Finds DPDK through pkg-config (`libdpdk`, Debian's `libdpdk-dev`), compiles
//! the C shim against its headers and links its shared libraries. Also records
//! where the distribution keeps DPDK's drivers (the `pmds-*` plugin directory),
//! which the EAL is told to load with `-d`.

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str = "install DPDK's development files (Debian/Ubuntu: \
    `apt-get install libdpdk-dev dpdk pkg-config`), or build without the `dpdk` feature";

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rustc-check-cfg=cfg(nos_dpdk_missing)");
    let required = std::env::var_os("CARGO_FEATURE_REQUIRED").is_some();

    let lib = match pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(false)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            if required {
                panic!(
                    "DPDK (pkg-config package libdpdk >= 22.11) was not found: {e}\n{INSTALL_HINT}"
                );
            }
            // Declarations only; nothing that links against them is built
            // without the `required` feature.
            println!("cargo:rustc-cfg=nos_dpdk_missing");
            println!("cargo:rustc-env=NOS_DPDK_PMD_DIR=");
            println!("cargo:rustc-env=NOS_DPDK_VERSION=");
            return;
        }
    };

    // The compiler flags as pkg-config gives them: besides -I they carry
    // `-include rte_config.h` and the -march DPDK's inline functions need.
    let cflags = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("pkg-config ran a moment ago");
    let cflags = String::from_utf8_lossy(&cflags.stdout).to_string();
    let mut build = cc::Build::new();
    build.file("src/shim.c").warnings(true).opt_level(3);
    let mut words = cflags.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-include" {
            if let Some(file) = words.next() {
                build.flag("-include").flag(file);
            }
        } else {
            build.flag(w);
        }
    }
    build.compile("nos_dpdk_shim");

    for path in &lib.link_paths {
        println!("cargo:rustc-link-search=native={}", path.display());
    }
    for l in &lib.libs {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    // The ring driver's rte_eth_from_rings (tests and benchmarks build ports
    // from rings of their own) is not among the libraries pkg-config lists.
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");

    let libdir = Command::new("pkg-config")
        .args(["--variable=libdir", "libdpdk"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let pmds = pmd_dir(Path::new(&libdir));
    println!(
        "cargo:rustc-env=NOS_DPDK_PMD_DIR={}",
        pmds.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!("cargo:rustc-env=NOS_DPDK_VERSION={}", lib.version);
    println!("cargo:version={}", lib.version);
}

/// `<libdir>/dpdk/pmds-<ABI>`, the newest ABI when there are several.
fn pmd_dir(libdir: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(libdir.join("dpdk"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("pmds-"))
        })
        .collect();
    dirs.sort();
    dirs.pop()
}
