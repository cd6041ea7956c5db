//! Builds the kernel programs (`monitor-ebpf`) with nightly for `bpfel-unknown-none` and leaves
//! the object in `OUT_DIR`, where `src/probes/load.rs` embeds it. Missing prerequisites stop the
//! build with the one command that installs them, instead of a linker error.
use std::{path::PathBuf, process::Command};

const SETUP_HINT: &str = "run `cargo xtask setup` once on this machine (it installs the nightly \
     toolchain's rust-src and a bpf-linker built against nightly's LLVM)";

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or_else(|| anyhow::anyhow!("monitor/ has no parent directory"))?;
    let ebpf_dir = workspace.join("monitor-ebpf");
    let common_dir = workspace.join("monitor-common");
    println!(
        "cargo:rerun-if-changed={}",
        common_dir.join("src").display()
    );
    println!("cargo:rerun-if-env-changed=PATH");

    check_prerequisites()?;
    let ebpf_dir = ebpf_dir.to_string_lossy().into_owned();
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir: &ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .map_err(|err| {
        anyhow::anyhow!("building the eBPF programs failed: {err:#}\nhint: {SETUP_HINT}")
    })
}

fn check_prerequisites() -> anyhow::Result<()> {
    let has_linker = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join("bpf-linker").is_file()))
        .unwrap_or(false);
    if !has_linker {
        anyhow::bail!("bpf-linker is not on PATH; {SETUP_HINT}");
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output();
    match sysroot {
        Ok(out) if out.status.success() => {
            let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
                anyhow::bail!("the nightly toolchain has no rust-src component; {SETUP_HINT}");
            }
            Ok(())
        }
        _ => anyhow::bail!(
            "no nightly Rust toolchain (`rustup run nightly rustc` failed); {SETUP_HINT}"
        ),
    }
}
