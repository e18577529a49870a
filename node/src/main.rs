//! `nimbus-node`: parses its configuration and runs the node until Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Nimbus edge node")]
struct Args {
    /// TOML configuration (see node.example.toml); NIMBUS_* variables override it.
    #[arg(long, short, env = "NIMBUS_CONFIG")]
    config: Option<PathBuf>,
}

/// glibc's malloc arenas when `MALLOC_ARENA_MAX` does not say: two.
const MALLOC_ARENAS: i32 = 2;

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?.block_on(run())
}

/// Caps glibc's malloc arenas before any thread starts. By default glibc gives up to eight
/// per core to threads that allocate at once; each keeps the memory freed into it, so after
/// a burst (compiling a component, a load of requests) the node held ~8 MiB more than with
/// two, at the same throughput (`bench/hello`). `MALLOC_ARENA_MAX` still overrides it.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes two integers and only changes the allocator's own settings;
        // no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NIMBUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wasmtime_cranelift=warn,cranelift=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let config =
        nimbus_node::config::NodeConfig::load(args.config.as_deref()).context("reading the node configuration")?;
    nimbus_node::run(config, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
