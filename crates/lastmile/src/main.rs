//! The `lastmile` binary: parses the command line and wires the crates together.

mod cli;
mod config;
mod demo;
mod go_runtime;
mod query_cmd;
mod rules_cmd;
mod serve;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Serve(args) => run(serve::run(args), &cli.log),
        cli::Command::Query(args) => run(query_cmd::run(args), &cli.log),
        cli::Command::Bench(args) => match args.kind.into_command() {
            Ok(cmd) => run(lastmile_bench::run(cmd), &cli.log),
            Err(go) => run(lastmile_ebpf::bench::run(go), &cli.log),
        },
        cli::Command::GoRuntime(args) => match args.command {
            cli::GoRuntimeCommand::Attach(a) => run(lastmile_ebpf::cli::run_attach(a), &cli.log),
        },
        cli::Command::Rules(args) => rules_cmd::run(args),
    }
}

fn run(
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
    log: &cli::LogArgs,
) -> std::process::ExitCode {
    init_logging(log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(log: &cli::LogArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match log.log_format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Text => builder.init(),
    }
}
