//! Emits `bpf_target_arch`, which selects the register layout of uprobe contexts.
fn main() -> aya_build::Result<()> {
    aya_build::emit_bpf_target_arch_cfg()
}
