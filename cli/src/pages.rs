//! `nimbus pages`: projects, deployments of a directory (like `wrangler pages deploy`), and
//! rollback, through the control plane's API.
//!
//! `pages connect` links a local Git repository: a `post-commit` hook deploys each commit
//! (a clean export of it, built by the project's command) with its branch, hash and message.
//!
//! A deploy hashes every file, asks the control plane which hashes it lacks, uploads only
//! those (a few at once, with a progress line), then commits the manifest: a file the cluster
//! already holds, in this project or another, is never sent again.

use crate::client::Client;
use crate::output::{ago, bytes, table, Progress, Style};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use futures::StreamExt as _;
use nimbus_api::pages::{FunctionsUpload, Missing, PagesDeployed, ProjectInfo, ProjectList, SourceModule};
use nimbus_pages::site::{File, Manifest, MAX_FILES, MAX_FILE_BYTES};
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Uploads in flight at once.
const UPLOADS: usize = 4;
/// Hashes per check-missing call.
const CHECK_BATCH: usize = 5_000;
/// What a deploy never uploads (wrangler's defaults), besides the rules files.
const IGNORED: &[&str] = &[".git", ".DS_Store", "node_modules", ".wrangler", "functions"];

#[derive(Subcommand)]
pub enum PagesCommand {
    /// Projects: create, list, delete.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Deploy a directory of static files (its `_redirects`, `_headers`, `_routes.json` too).
    Deploy {
        /// The build output directory (`dist`, `public`, `site`, …).
        dir: PathBuf,
        #[arg(long)]
        project: String,
        /// The branch this deploys (the project's production branch when absent).
        #[arg(long)]
        branch: Option<String>,
        #[arg(long)]
        commit_hash: Option<String>,
        #[arg(long)]
        commit_message: Option<String>,
        /// The Functions directory (default: `functions` in the current directory, if any).
        #[arg(long)]
        functions: Option<PathBuf>,
        /// A `nimbus.toml` with the bindings, vars and limits of the Functions.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// A project's deployments: list, rollback.
    Deployment {
        #[command(subcommand)]
        command: DeploymentCommand,
    },
    /// A project's custom domains (production answers on them, on every node).
    Domain {
        #[command(subcommand)]
        command: DomainCommand,
    },
    /// Deploy every commit of a local Git repository: production for the project's
    /// production branch, a preview at its alias for any other (a `post-commit` hook).
    Connect {
        project: String,
        /// The repository (its working tree).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Run in a clean checkout of the commit before deploying (e.g. `mkdocs build`).
        #[arg(long)]
        build_command: Option<String>,
        /// The directory the build leaves the site in, relative to the repository.
        #[arg(long, default_value = ".")]
        output_dir: PathBuf,
    },
    /// What the hook `connect` installs runs: deploy the repository's HEAD.
    #[command(hide = true)]
    GitDeploy {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ProjectCommand {
    Create {
        name: String,
        #[arg(long, default_value = "main")]
        production_branch: String,
    },
    List,
    /// Delete a project and every deployment of it.
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum DomainCommand {
    Add { project: String, domain: String },
    Remove { project: String, domain: String },
}

#[derive(Subcommand)]
pub enum DeploymentCommand {
    /// Every deployment of a project, newest first.
    List { project: String },
    /// Production serves an earlier deployment again (default: the one before the current).
    Rollback { project: String, deployment: Option<String> },
}

pub async fn run(command: PagesCommand, client: &Client, json_out: bool, style: &Style) -> Result<()> {
    match command {
        PagesCommand::Project { command: ProjectCommand::Create { name, production_branch } } => {
            let body = json!({ "name": name, "production_branch": production_branch });
            let project: ProjectInfo = client.call_as(Method::POST, "/v1/pages/projects", Some(&body)).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&project)?);
            } else {
                println!(
                    "{} Created Pages project {} (production branch {}); it serves at {}",
                    style.ok("✓"),
                    style.bold(&project.name),
                    project.production_branch,
                    host(&project.name, None)
                );
            }
        }
        PagesCommand::Project { command: ProjectCommand::List } => {
            let list: ProjectList = client.call_as(Method::GET, "/v1/pages/projects", None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .projects
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            std::iter::once(host(&p.name, None))
                                .chain(p.domains.iter().cloned())
                                .collect::<Vec<_>>()
                                .join(", "),
                            p.production_branch.clone(),
                            p.production.clone().unwrap_or_else(|| "-".into()),
                            ago(p.created_ms as i64),
                        ]
                    })
                    .collect();
                table(style, &["PROJECT", "HOSTS", "PRODUCTION BRANCH", "PRODUCTION", "CREATED"], &rows);
            }
        }
        PagesCommand::Project { command: ProjectCommand::Delete { name } } => {
            client.call(Method::DELETE, &format!("/v1/pages/projects/{name}"), None).await?;
            if json_out {
                println!("{}", json!({ "deleted": name }));
            } else {
                println!("{} Deleted Pages project {}", style.ok("✓"), style.bold(&name));
            }
        }
        PagesCommand::Domain { command } => {
            let (method, project, domain) = match command {
                DomainCommand::Add { project, domain } => (Method::PUT, project, domain),
                DomainCommand::Remove { project, domain } => (Method::DELETE, project, domain),
            };
            let path = format!("/v1/pages/projects/{project}/domains/{domain}");
            let info: ProjectInfo = client.call_as(method, &path, None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                let domains = if info.domains.is_empty() { "none".to_owned() } else { info.domains.join(", ") };
                println!(
                    "{} {} answers on {} and {domains}",
                    style.ok("✓"),
                    style.bold(&project),
                    host(&project, None)
                );
            }
        }
        PagesCommand::Connect { project, repo, build_command, output_dir } => {
            connect(client, &project, &repo, build_command, output_dir, json_out, style).await?;
        }
        PagesCommand::GitDeploy { repo } => git_deploy(&repo, json_out, style).await?,
        PagesCommand::Deploy { dir, project, branch, commit_hash, commit_message, functions, config } => {
            let functions = functions.or_else(|| Some(PathBuf::from("functions")).filter(|f| f.is_dir()));
            let options = DeployOptions { dir, project, branch, commit_hash, commit_message, functions, config };
            deploy(client, options, json_out, style).await?;
        }
        PagesCommand::Deployment { command: DeploymentCommand::List { project } } => {
            let info: ProjectInfo = client.call_as(Method::GET, &format!("/v1/pages/projects/{project}"), None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                let rows: Vec<Vec<String>> = info
                    .deployments
                    .iter()
                    .map(|d| {
                        let environment = if d.production {
                            style.ok("production")
                        } else if d.branch == info.production_branch {
                            "production (earlier)".into()
                        } else {
                            "preview".into()
                        };
                        vec![
                            d.id.clone(),
                            environment,
                            d.branch.clone(),
                            d.commit_hash.as_deref().map(|h| h[..h.len().min(10)].to_owned()).unwrap_or_default(),
                            d.commit_message.as_deref().unwrap_or("").lines().next().unwrap_or("").to_owned(),
                            format!("{} files, {}", d.files, bytes(d.bytes)),
                            ago(d.created_ms as i64),
                        ]
                    })
                    .collect();
                table(style, &["ID", "ENVIRONMENT", "BRANCH", "COMMIT", "MESSAGE", "SIZE", "CREATED"], &rows);
            }
        }
        PagesCommand::Deployment { command: DeploymentCommand::Rollback { project, deployment } } => {
            let body = json!({ "deployment": deployment });
            let path = format!("/v1/pages/projects/{project}/rollback");
            let info: ProjectInfo = client.call_as(Method::POST, &path, Some(&body)).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!(
                    "{} {} production serves deployment {}",
                    style.ok("✓"),
                    style.bold(&project),
                    info.production.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

/// A project's host (or a deployment's or branch's, under `label`) on the default suffix.
fn host(project: &str, label: Option<&str>) -> String {
    match label {
        Some(label) => format!("{label}.{project}.pages.localhost"),
        None => format!("{project}.pages.localhost"),
    }
}

pub struct DeployOptions {
    pub dir: PathBuf,
    pub project: String,
    pub branch: Option<String>,
    pub commit_hash: Option<String>,
    pub commit_message: Option<String>,
    /// The Functions directory, if the project has one.
    pub functions: Option<PathBuf>,
    /// The `nimbus.toml` of the Functions' bindings.
    pub config: Option<PathBuf>,
}

/// The code a deployment carries: `_worker.js` in the output directory (advanced mode), or
/// every file of the Functions directory, each with what it imports.
fn collect_code(dir: &Path, functions: Option<&Path>, config: Option<&Path>) -> Result<Option<FunctionsUpload>> {
    let manifest = match config {
        Some(config) => Some(serde_json::to_value(crate::manifest::load_bindings(config)?)?),
        None => None,
    };
    let worker = dir.join("_worker.js");
    if worker.is_file() {
        let script = crate::bundle::collect(dir, &worker)?;
        let modules = script.modules.into_iter().map(|m| SourceModule { name: m.name, source: m.source }).collect();
        return Ok(Some(FunctionsUpload { modules, worker_main: Some(script.main), manifest }));
    }
    let Some(functions) = functions else { return Ok(None) };
    let functions =
        functions.canonicalize().with_context(|| format!("the Functions directory {}", functions.display()))?;
    // Module names are relative to the directory holding `functions/`, so the control plane
    // sees `functions/api/[id].ts` and what it imports from beside it (`lib/db.ts`).
    let root = functions.parent().unwrap_or(&functions).to_path_buf();
    let mut modules = std::collections::BTreeMap::new();
    let mut pending = vec![functions.clone()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).with_context(|| format!("reading {}", at.display()))? {
            let path = entry.with_context(|| format!("reading {}", at.display()))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if crate::bundle::is_script(&path) {
                for module in crate::bundle::collect(&root, &path)?.modules {
                    modules.entry(module.name).or_insert(module.source);
                }
            }
        }
    }
    if modules.is_empty() {
        return Ok(None);
    }
    let modules = modules.into_iter().map(|(name, source)| SourceModule { name, source }).collect();
    Ok(Some(FunctionsUpload { modules, worker_main: None, manifest }))
}

/// The files of an output directory and their rules, hashed.
pub struct Collected {
    pub manifest: Manifest,
    /// Path on disk of each blob to upload, by hash (one per hash).
    pub sources: std::collections::BTreeMap<String, PathBuf>,
}

/// Walks `dir`: every file but the ignored ones, the rules files read as text. Errors name
/// the file (Cloudflare's limits: 20,000 files, 25 MiB each).
pub fn collect(dir: &Path) -> Result<Collected> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let mut collected = Collected { manifest: Manifest::default(), sources: Default::default() };
    let rules = |name: &str| -> Result<Option<String>> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    };
    collected.manifest.redirects = rules("_redirects")?;
    collected.manifest.headers = rules("_headers")?;
    collected.manifest.routes = rules("_routes.json")?;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        let entries = std::fs::read_dir(&at).with_context(|| format!("reading {}", at.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", at.display()))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let top = at == dir;
            if IGNORED.contains(&name.as_str())
                || (top && ["_redirects", "_headers", "_routes.json", "_worker.js"].contains(&name.as_str()))
            {
                continue;
            }
            let kind = entry.file_type().with_context(|| format!("reading {}", path.display()))?;
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            let meta = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            if !meta.is_file() {
                continue;
            }
            let relative = path.strip_prefix(dir).unwrap_or(&path);
            if meta.len() > MAX_FILE_BYTES {
                bail!("{}: {}; a Pages file is at most 25 MiB", relative.display(), bytes(meta.len()));
            }
            let url_path = format!("/{}", relative.to_string_lossy().replace('\\', "/"));
            let content = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let hash = hex::encode(Sha256::digest(&content));
            collected.sources.entry(hash.clone()).or_insert(path.clone());
            collected.manifest.files.insert(url_path, File { hash, size: meta.len() });
            if collected.manifest.files.len() > MAX_FILES {
                bail!("{}: more than {MAX_FILES} files; a Pages deployment holds at most {MAX_FILES}", dir.display());
            }
        }
    }
    nimbus_pages::site::Site::new(collected.manifest.clone()).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    Ok(collected)
}

pub async fn deploy(client: &Client, options: DeployOptions, json_out: bool, style: &Style) -> Result<PagesDeployed> {
    let DeployOptions { dir, project, branch, commit_hash, commit_message, functions, config } = options;
    let collected = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || collect(&dir)).await??
    };
    let code = collect_code(&dir, functions.as_deref(), config.as_deref())?;
    let has_code = code.is_some();
    let hashes: Vec<String> = collected.sources.keys().cloned().collect();
    let mut missing = Vec::new();
    for batch in hashes.chunks(CHECK_BATCH) {
        let body = json!({ "hashes": batch });
        let answer: Missing = client.call_as(Method::POST, "/v1/pages/assets/check-missing", Some(&body)).await?;
        missing.extend(answer.missing);
    }
    let total: u64 = missing
        .iter()
        .filter_map(|h| collected.sources.get(h))
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "{} {} files, {} new ({}), to {}",
        style.dim("uploading:"),
        collected.manifest.files.len(),
        missing.len(),
        bytes(total),
        client.api_url
    );
    let progress = std::sync::Mutex::new(Progress::new(Some(total)));
    let uploads = futures::stream::iter(missing.iter()).map(|hash| {
        let source = collected.sources.get(hash).cloned();
        let progress = &progress;
        async move {
            let source = source.with_context(|| format!("no file has the hash {hash}"))?;
            let content = tokio::fs::read(&source).await.with_context(|| format!("reading {}", source.display()))?;
            let size = content.len() as u64;
            let response = client
                .http()
                .put(format!("{}/v1/pages/assets/{hash}", client.api_url))
                .bearer_auth(client.token())
                .body(content)
                .send()
                .await
                .with_context(|| format!("uploading {}", source.display()))?;
            if !response.status().is_success() {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                bail!("uploading {}: {text} (HTTP {})", source.display(), status.as_u16());
            }
            progress.lock().unwrap_or_else(|p| p.into_inner()).add(size);
            anyhow::Ok(())
        }
    });
    let mut uploads = uploads.buffer_unordered(UPLOADS);
    while let Some(uploaded) = uploads.next().await {
        uploaded?;
    }
    progress.lock().unwrap_or_else(|p| p.into_inner()).finish();
    let body = json!({
        "manifest": collected.manifest,
        "branch": branch,
        "commit_hash": commit_hash,
        "commit_message": commit_message,
        "functions": code,
    });
    if has_code {
        eprintln!("{} Functions (the control plane compiles them into one worker)", style.dim("building:"));
    }
    let path = format!("/v1/pages/projects/{project}/deployments");
    let deployed: PagesDeployed = client.call_as(Method::POST, &path, Some(&body)).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&deployed)?);
    } else {
        let d = &deployed.deployment;
        println!(
            "{} Deployed {} ({} branch {}): {}",
            style.ok("✓"),
            style.bold(&project),
            if d.production { "production," } else { "preview," },
            d.branch,
            host(&project, Some(&d.id))
        );
        println!("  {} {}", style.dim("branch alias:"), host(&project, Some(&d.alias)));
        if d.production {
            println!("  {} {}", style.dim("production:  "), host(&project, None));
        }
    }
    Ok(deployed)
}

/// What `nimbus pages connect` keeps in the repository's Git directory (mode 0600: it holds
/// the token; give it a `pages:edit` one).
#[derive(serde::Serialize, serde::Deserialize)]
struct GitLink {
    project: String,
    build_command: Option<String>,
    output_dir: PathBuf,
    api_url: String,
    token: String,
}

const GIT_LINK_FILE: &str = "nimbus-pages.json";
const HOOK_MARK: &str = "# installed by `nimbus pages connect`";

/// Runs `git` in `repo`; its stdout, trimmed.
fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .context("running git (scripts/setup installs it)")?;
    if !output.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn git_dir(repo: &Path) -> Result<PathBuf> {
    let dir = PathBuf::from(git(repo, &["rev-parse", "--absolute-git-dir"])?);
    Ok(dir)
}

async fn connect(
    client: &Client,
    project: &str,
    repo: &Path,
    build_command: Option<String>,
    output_dir: PathBuf,
    json_out: bool,
    style: &Style,
) -> Result<()> {
    let info: ProjectInfo = client.call_as(Method::GET, &format!("/v1/pages/projects/{project}"), None).await?;
    let git_dir = git_dir(repo).with_context(|| format!("{} is not a Git repository", repo.display()))?;
    if output_dir.is_absolute() || output_dir.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        bail!("--output-dir {}: a directory inside the repository", output_dir.display());
    }
    let hook = git_dir.join("hooks").join("post-commit");
    if let Ok(existing) = std::fs::read_to_string(&hook) {
        if !existing.contains(HOOK_MARK) {
            bail!("{} exists and is not Nimbus's; add `nimbus pages git-deploy` to it yourself", hook.display());
        }
    }
    let link = GitLink {
        project: project.to_owned(),
        build_command,
        output_dir,
        api_url: client.api_url.clone(),
        token: client.token().to_owned(),
    };
    let path = git_dir.join(GIT_LINK_FILE);
    nimbus_testkit::certs::write_private(&path, &serde_json::to_string_pretty(&link)?)?;
    let nimbus = std::env::current_exe().context("the path of this nimbus")?;
    let script = format!(
        "#!/bin/sh\n{HOOK_MARK}: every commit deploys to Pages project {project}.\n\
         exec {} pages git-deploy --repo \"$(git rev-parse --show-toplevel)\"\n",
        shell_quote(&nimbus.to_string_lossy())
    );
    std::fs::create_dir_all(hook.parent().unwrap_or(&git_dir))
        .with_context(|| format!("creating {}", hook.display()))?;
    std::fs::write(&hook, script).with_context(|| format!("writing {}", hook.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    if json_out {
        println!("{}", json!({ "project": project, "hook": hook, "production_branch": info.production_branch }));
    } else {
        println!(
            "{} Every commit in {} deploys {}: {} to production, other branches to previews at <branch>.{}",
            style.ok("✓"),
            repo.display(),
            style.bold(project),
            info.production_branch,
            host(project, None)
        );
    }
    Ok(())
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Deploys the commit at HEAD: a clean export of it, built, then deployed with its branch,
/// hash and message.
pub async fn git_deploy(repo: &Path, json_out: bool, style: &Style) -> Result<()> {
    let git_dir = git_dir(repo)?;
    let link_path = git_dir.join(GIT_LINK_FILE);
    let link: GitLink = serde_json::from_slice(
        &std::fs::read(&link_path)
            .with_context(|| format!("reading {} (run `nimbus pages connect`)", link_path.display()))?,
    )
    .with_context(|| format!("reading {}", link_path.display()))?;
    let branch = git(repo, &["rev-parse", "--abbrev-ref", "HEAD"])?;
    let hash = git(repo, &["rev-parse", "HEAD"])?;
    let message = git(repo, &["log", "-1", "--format=%B"])?;
    let checkout = tempfile::tempdir().context("a directory for the checkout")?;
    let export = std::process::Command::new("sh")
        .arg("-c")
        .arg("git -C \"$1\" archive --format=tar HEAD | tar -x -C \"$2\"")
        .arg("sh")
        .arg(repo)
        .arg(checkout.path())
        .status()
        .context("exporting HEAD")?;
    if !export.success() {
        bail!("exporting {hash} of {} failed", repo.display());
    }
    if let Some(command) = &link.build_command {
        eprintln!("{} {command}", style.dim("building:"));
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(checkout.path())
            .status()
            .with_context(|| format!("running the build command `{command}`"))?;
        if !status.success() {
            bail!("build command `{command}` failed ({status}); commit {hash} is not deployed");
        }
    }
    let client = crate::client::connect(Some(link.api_url), Some(link.token), Path::new(""))?;
    let options = DeployOptions {
        dir: checkout.path().join(&link.output_dir),
        project: link.project,
        branch: Some(branch),
        commit_hash: Some(hash),
        commit_message: Some(message),
        functions: Some(checkout.path().join("functions")).filter(|f| f.is_dir()),
        config: Some(checkout.path().join("nimbus.toml")).filter(|f| f.is_file()),
    };
    deploy(&client, options, json_out, style).await.map(|_| ())
}
