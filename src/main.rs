fn main() -> std::process::ExitCode {
    rkectl::cli::main()
}
