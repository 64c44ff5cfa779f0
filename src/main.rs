//! Thin entry point: all behaviour lives in the library so it can be tested.
fn main() -> std::process::ExitCode {
    elfpack::cli::main()
}
