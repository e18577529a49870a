//! A child process that announces readiness with one JSON line on stdout.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Long enough for a debug build to compile a few components at boot.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy)]
pub enum Role {
    ControlPlane,
    Node,
}

impl Role {
    fn binary(self) -> &'static str {
        match self {
            Role::ControlPlane => "nimbus-control-plane",
            Role::Node => "nimbus-node",
        }
    }
}

pub struct Proc {
    child: Child,
}

impl Proc {
    /// Starts the binary with `env`, logs (stderr) appended to `log`, and waits for its ready line.
    pub async fn start(role: Role, bin_dir: &Path, env: Vec<(String, String)>, log: &Path) -> Result<(Proc, String)> {
        let binary = bin_dir.join(role.binary());
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut command = Command::new(&binary);
        command
            // A config path in the caller's environment is not the cluster's; the cluster's
            // own (in `env`) wins.
            .env_remove("NIMBUS_CONFIG")
            .envs(env)
            .env(
                "NIMBUS_LOG",
                std::env::var("NIMBUS_LOG").unwrap_or_else(|_| "info,cranelift=warn,wasmtime_cranelift=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        let mut child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let Some(stdout) = child.stdout.take() else { bail!("no stdout from {}", binary.display()) };
        let mut lines = BufReader::new(stdout).lines();
        let line = match tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = child.wait().await.ok();
                bail!("{} exited before it was ready ({status:?}); see {}", role.binary(), log.display())
            }
            Err(_) => bail!("{} was not ready within {READY_TIMEOUT:?}; see {}", role.binary(), log.display()),
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((Proc { child }, line))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn kill(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if the process has not exited within a bound.
    pub async fn terminate(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            signal(pid, libc::SIGTERM);
            if tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await.is_ok() {
                return Ok(());
            }
        }
        self.child.kill().await?;
        Ok(())
    }
}

#[allow(unsafe_code)]
pub fn signal(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child's.
    unsafe {
        libc::kill(pid, signal);
    }
}
