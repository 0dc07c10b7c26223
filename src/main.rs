//! `vm0fs`: mount the VM0 platform as files. All of it lives in the library; see `vm0fs::cli`.

fn main() {
    std::process::exit(vm0fs::cli::main());
}
