//! `kvsweep render`: one sweep cell → a self-contained runner script (`run.sh`).
//!
//! The script is a minijinja template (`templates/run-cell.sh.j2`, built in, overridable with
//! `--templates DIR`). Every value that reaches it is shell-quoted by the `sh` filter, so a model
//! name with a space or a `$` cannot break or inject into the script.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::base::kinds::{EngineKind, Offload, TraceFormat};
use crate::base::runner::{ContainerRuntime, Runner, RunnerSet};
use crate::base::workload::Workload;
use crate::data::artifact::schema::{JsonArtifact, Status};
use crate::data::trace_cache::RemoteTraces;
use crate::plan::engine::{self, LaunchRequest};
use crate::plan::spec::{self, Cell, LoadOptions, Shape, SpecWorkload, Sweep, TraceSource};

const TEMPLATE_NAME: &str = "run-cell.sh.j2";
const BUILTIN_TEMPLATE: &str = include_str!("../../../templates/run-cell.sh.j2");

/// Render the runner script of one sweep cell.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub cell: CellSelector,
    /// Directory to write run.sh into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Directory holding a replacement run-cell.sh.j2.
    #[arg(long)]
    pub templates: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: CellOverrides,
}

/// Values the command line gives or overrides; an InferenceX-shape spec has none of them itself.
/// A Slurm manifest keeps them as JSON for its resubmits.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
pub struct CellOverrides {
    /// The model the engine serves (for the simulator: a preset name).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, value_enum)]
    pub engine: Option<EngineKind>,
    /// Container image (default: the spec's, else the runner's for the engine).
    #[arg(long)]
    pub image: Option<String>,
    /// Replay duration in seconds.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Trace file or directory to replay.
    #[arg(long)]
    pub traces: Option<PathBuf>,
    /// Host memory for the offload tier, GiB across the TP group.
    #[arg(long)]
    pub offload_gb: Option<f64>,
    /// Port the engine listens on (`run-cell`: 0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Seconds to wait for /health (default: per engine, 1800 for vLLM and SGLang).
    #[arg(long)]
    pub health_timeout: Option<u64>,
}

impl CellOverrides {
    /// The flags that give these overrides again, for a command run elsewhere (an sbatch task).
    /// The port is left out: each task picks its own.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                args.extend([flag.to_owned(), v]);
            }
        };
        push("--model", self.model.clone());
        push("--engine", self.engine.map(|e| e.to_string()));
        push("--image", self.image.clone());
        push("--duration", self.duration.map(|d| d.to_string()));
        push(
            "--traces",
            self.traces.as_ref().map(|t| {
                std::path::absolute(t)
                    .unwrap_or_else(|_| t.clone())
                    .display()
                    .to_string()
            }),
        );
        push("--offload-gb", self.offload_gb.map(|g| g.to_string()));
        push(
            "--health-timeout",
            self.health_timeout.map(|t| t.to_string()),
        );
        args
    }
}

/// Everything about one cell that the script and `cell.json` record; its shape is the
/// artifact schema's.
pub use crate::data::artifact::schema::CellPlan;

impl CellPlan {
    /// The engine command line of this cell on `runner`: what the script and run-cell start.
    pub fn launch(&self, runner: &Runner) -> Result<engine::Launch> {
        let path = self.model_path.as_ref().map(|p| p.display().to_string());
        engine::launch(&LaunchRequest {
            engine: self.engine,
            model: path.as_deref().unwrap_or(&self.model),
            served_name: path.is_some().then_some(self.model.as_str()),
            max_model_len: self.max_model_len,
            runner,
            cell: &self.cell,
            backend: self.offload_backend,
            offload_gib: self.offload_gib,
            port: self.port,
            extra_args: &self.engine_args,
            recipe: self.recipe.as_ref(),
        })
    }

    /// The engine start of this cell on `runner`, in its container: the one definition that the
    /// script prints (`engine_lines`) and run-cell starts.
    pub fn host_command(&self, runner: &Runner) -> Result<engine::HostCommand> {
        engine::host_command(&self.launch(runner)?, runner, self.image.as_deref())
    }
}

/// Resolves one cell of a loaded sweep into a plan, applying command-line overrides.
pub fn plan(sweep: &Sweep, cell: &Cell, runner: &Runner, o: &CellOverrides) -> Result<CellPlan> {
    let s = &sweep.settings;
    let engine = o.engine.unwrap_or(s.engine);
    let model = match (&o.model, &s.model) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) if engine == EngineKind::Sim => m.preset.clone().with_context(|| {
            "the simulator serves a model preset: give model.preset in the spec or --model PRESET"
        })?,
        (None, Some(m)) => m.name.clone(),
        (None, None) => bail!("the spec names no model: give --model"),
    };
    // A local model directory, made absolute: the script may run from another directory.
    let model_path = match (&o.model, &s.model) {
        (None, Some(m)) if engine != EngineKind::Sim => m
            .path
            .as_ref()
            .map(|p| {
                std::path::absolute(p)
                    .with_context(|| format!("cannot make {} absolute", p.display()))
            })
            .transpose()?,
        _ => None,
    };
    let max_model_len = s.model.as_ref().and_then(|m| m.max_len);
    let tester = s.workload.workload.tester_kind();
    let source = match (&o.traces, &s.traces, tester) {
        (Some(t), _, _) => Some(TraceSource::Path(t.clone())),
        (None, Some(t), _) => Some(t.source.clone()),
        (None, None, Some(_)) => None,
        (None, None, None) => match &s.missing_traces_hint {
            Some(hint) => bail!("the spec names no traces: {hint}"),
            None => bail!("the spec names no traces: give --traces PATH"),
        },
    };
    let (traces, trace_url) = match source {
        // The script may run from another directory (a CI job, a Slurm node): no relative paths.
        Some(TraceSource::Path(t)) => {
            let t = std::path::absolute(&t)
                .with_context(|| format!("cannot make {} absolute", t.display()))?;
            (Some(t), None)
        }
        Some(TraceSource::Url(remote)) => (None, Some(remote)),
        None => (None, None),
    };
    // An AgentX job's recorded launch, or a native spec's recipe for the cell's TP.
    let recipe = s.recipe.clone().or_else(|| {
        s.tp_recipes
            .iter()
            .find(|(tp, _)| *tp == cell.tp)
            .map(|(_, r)| r.clone())
    });
    let image = o
        .image
        .clone()
        .or_else(|| s.image.clone())
        .or_else(|| recipe.as_ref().map(|r| r.image.clone()))
        .or_else(|| runner.images.get(&engine).cloned());
    if runner.container != ContainerRuntime::None && image.is_none() {
        bail!(
            "runner `{}` starts engines in {:?} containers but has no image for {engine}: give --image",
            runner.name,
            runner.container
        );
    }
    let offload_gib = match (cell.offload, o.offload_gb, s.offload_budget) {
        (Offload::On, Some(gb), _) => Some(gb),
        (Offload::On, None, Some(budget)) => Some(budget.gib(runner)),
        (Offload::On, None, None) => bail!(
            "cell `{}` has offload on but no host-memory budget: give --offload-gb (or offload_gb in a native spec)",
            cell.name
        ),
        _ => None,
    };
    let duration_s = o.duration.unwrap_or(s.duration_s);
    let trace_format = s.traces.as_ref().map(|t| t.format).unwrap_or_default();
    let workload = cell_workload(
        &s.workload,
        &CellWorkload {
            engine,
            model: &model,
            model_path: model_path.as_deref(),
            users: cell.users,
            duration_s,
            trace_format,
            traces: traces.as_deref(),
            port: o.port,
        },
    )?;
    Ok(CellPlan {
        format_version: <CellPlan as JsonArtifact>::VERSION,
        cell: cell.clone(),
        spec: sweep.path.clone(),
        runner: runner.name.clone(),
        engine,
        model,
        model_path,
        max_model_len,
        image,
        precision: s.precision.clone(),
        offload_backend: s.offload_backend,
        offload_gib,
        engine_args: s.engine_args.clone(),
        recipe,
        duration_s,
        traces,
        trace_url,
        trace_format,
        workload,
        port: o.port,
        health_timeout_s: o
            .health_timeout
            .unwrap_or_else(|| engine.default_health_timeout_s()),
        validity: s.validity.clone(),
        economics: s.economics.clone(),
    })
}

/// What a cell sets in its workload: the parts of the command line that are the cell's.
struct CellWorkload<'a> {
    engine: EngineKind,
    model: &'a str,
    model_path: Option<&'a Path>,
    users: u32,
    duration_s: u64,
    trace_format: TraceFormat,
    traces: Option<&'a Path>,
    port: u16,
}

/// The spec's workload with the cell's part set. Flags the cell sets by default give way to the
/// spec's own `replay:` choice.
fn cell_workload(spec: &SpecWorkload, cell: &CellWorkload<'_>) -> Result<Workload> {
    let url = format!("http://127.0.0.1:{}", cell.port);
    let mut workload = spec.workload.clone();
    match &mut workload {
        Workload::Replay(r) => {
            r.model = Some(cell.model.to_owned());
            // The engine's usual API, unless the spec chooses one.
            if !spec.sets("api") {
                r.api = cell.engine.replay_api();
            }
            r.users = cell.users;
            r.duration = cell.duration_s as f64;
            r.format = cell.trace_format;
            r.engine_label = Some(cell.engine.to_string());
            // A cell measures from an empty cache: the preflight's probes are not in it.
            if cell.engine.reset_path().is_some() && !spec.sets("reset_cache") {
                r.control.reset_cache = true;
            }
            // Prompts keep to the served model's vocabulary (completions) or are made of its
            // words (chat) when its tokenizer is at hand, unless the spec names another.
            if let Some(dir) = cell.model_path
                && !spec.sets("tokenizer")
            {
                r.tokenizer = Some(dir.join("tokenizer.json"));
            }
            // Where the cell runs, the runner points these at the server, the traces it has
            // and the cell's directory.
            r.url = vec![url];
            r.traces = cell.traces.map(Path::to_path_buf).into_iter().collect();
            r.out = PathBuf::from(".");
            r.check()
                .map_err(|e| anyhow::anyhow!("`replay.{}`: {}", e.field, e.message))?;
        }
        Workload::Test(t) => {
            let common = t
                .tester
                .common_mut()
                .context("the spec's tester is not one a cell can run")?;
            common.model = Some(cell.model.to_owned());
            common.api = cell.engine.replay_api();
            common.url = url;
            common.output_dir = PathBuf::from("tester");
        }
    }
    Ok(workload)
}

/// The template's view of a runner.
#[derive(Serialize)]
struct RunnerView<'a> {
    name: &'a str,
    vendor: crate::base::runner::Vendor,
    container: ContainerRuntime,
}

#[derive(Serialize)]
struct ScriptContext<'a> {
    kvsweep_version: &'a str,
    spec_path: String,
    cell: &'a Cell,
    runner: RunnerView<'a>,
    engine: EngineKind,
    image: &'a str,
    /// `image` made safe as a file name, for the enroot squash file.
    image_file: String,
    port: u16,
    health_timeout_s: u64,
    /// The `format_version` the script writes into status.json.
    status_format_version: u32,
    /// The engine command ([`engine::host_command`], which `run-cell` starts too), as shell
    /// text, one `--flag value` group a line.
    engine_lines: Vec<String>,
    /// Where the engine command comes from: a recorded InferenceX launch, or the runner's flags.
    engine_source: String,
    /// Where a replay cell's traces are, when the spec gives a path.
    traces: Option<String>,
    /// `kvsweep` arguments that fetch a replay cell's traces named by URL and print their path.
    trace_fetch: Option<Vec<String>>,
    tester: Option<&'a str>,
    cell_json: String,
}

/// Renders the script for a plan, with the built-in template or the one in `templates`.
pub fn render_script(plan: &CellPlan, runner: &Runner, templates: Option<&Path>) -> Result<String> {
    let engine_lines = plan.host_command(runner)?.shell_lines()?;
    let engine_source = match &plan.recipe {
        Some(r) => format!(
            "InferenceX's launch `{}` (commit {}, recorded in {}), with kvsweep's deliberate differences: {}",
            r.name,
            r.inferencex_commit,
            crate::base::recipe::RECORDED_PATH,
            crate::base::recipe::DELIBERATE_DIFFERENCES
                .iter()
                .map(|(what, _)| *what)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => format!("runner {}'s flags for {}", runner.name, plan.engine),
    };
    let image = plan.image.clone().unwrap_or_default();
    let ctx = ScriptContext {
        kvsweep_version: crate::VERSION,
        spec_path: plan.spec.display().to_string(),
        cell: &plan.cell,
        runner: RunnerView {
            name: &runner.name,
            vendor: runner.vendor,
            container: runner.container,
        },
        engine: plan.engine,
        image_file: image_file_name(&image),
        image: &image,
        port: plan.port,
        health_timeout_s: plan.health_timeout_s,
        status_format_version: Status::VERSION,
        engine_lines,
        engine_source,
        traces: plan.traces.as_ref().map(|t| t.display().to_string()),
        trace_fetch: plan.trace_url.as_ref().map(RemoteTraces::fetch_args),
        tester: plan.workload.tester_kind(),
        cell_json: serde_json::to_string(plan)?,
    };
    let source = match templates {
        Some(dir) => {
            let path = dir.join(TEMPLATE_NAME);
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read template {}", path.display()))?
        }
        None => BUILTIN_TEMPLATE.to_owned(),
    };
    let mut env = shell_environment();
    env.add_template_owned(TEMPLATE_NAME, source)
        .context("the runner-script template does not parse")?;
    let script = env
        .get_template(TEMPLATE_NAME)?
        .render(minijinja::value::Serde(&ctx))
        .context("cannot render the runner-script template")?;
    Ok(script + "\n")
}

/// An image reference made safe as a file name, for the enroot squash file.
pub(crate) fn image_file_name(image: &str) -> String {
    image
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '+'
            }
        })
        .collect()
}

/// A template environment for shell scripts: undefined values are errors, and the `sh` and
/// `sh_words` filters quote values for a POSIX shell.
pub(crate) fn shell_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("sh", shell_quote);
    env.add_filter("sh_words", shell_join);
    env
}

/// The `sh` template filter: quotes a value for a POSIX shell.
fn shell_quote(value: minijinja::Value) -> Result<String, minijinja::Error> {
    let text = value.to_string();
    shlex::try_quote(&text)
        .map(|q| q.into_owned())
        .map_err(|e| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("cannot shell-quote {text:?}: {e}"),
            )
        })
}

/// The `sh_words` template filter: quotes each word of a list and joins them with spaces.
fn shell_join(words: Vec<String>) -> Result<String, minijinja::Error> {
    let quoted: Vec<String> = words
        .into_iter()
        .map(|w| shell_quote(minijinja::Value::from(w)))
        .collect::<Result<_, _>>()?;
    Ok(quoted.join(" "))
}

/// Which cell of which spec, as the command line names it.
#[derive(Debug, Clone, clap::Args)]
pub struct CellSelector {
    /// The sweep spec (InferenceX or native shape).
    pub spec: PathBuf,
    /// The cell, by its matrix `name`.
    #[arg(long)]
    pub cell: String,
    /// The entry of an InferenceX-shape spec.
    #[arg(long)]
    pub key: Option<String>,
    /// The runner (required for InferenceX-shape specs).
    #[arg(long)]
    pub runner: Option<String>,
}

/// Loads the spec and finds the cell and its runner.
pub fn select<'r>(sel: &CellSelector, runners: &'r RunnerSet) -> Result<(Sweep, Cell, &'r Runner)> {
    let sweep = spec::load(
        &sel.spec,
        LoadOptions {
            key: sel.key.as_deref(),
            runner: sel.runner.as_deref(),
            runners,
        },
    )?;
    let Some(cell) = sweep.cell(&sel.cell).cloned() else {
        let names: Vec<&str> = sweep
            .cells
            .iter()
            .take(8)
            .map(|c| c.name.as_str())
            .collect();
        let more = sweep.cells.len().saturating_sub(names.len());
        bail!(
            "{}: no cell named `{}`; cells include: {}{}",
            sel.spec.display(),
            sel.cell,
            names.join(", "),
            if more > 0 {
                format!(" and {more} more (see `kvsweep matrix --format table`)")
            } else {
                String::new()
            }
        );
    };
    let runner = cell_runner(&sweep, &cell, runners)?;
    Ok((sweep, cell, runner))
}

/// The runner a cell runs on.
pub fn cell_runner<'r>(sweep: &Sweep, cell: &Cell, runners: &'r RunnerSet) -> Result<&'r Runner> {
    let runner_name = match (&cell.runner, &sweep.shape) {
        (Some(r), _) => r.clone(),
        (None, Shape::InferenceX { .. }) => {
            bail!("an InferenceX-shape spec needs --runner to pick the cell's runner")
        }
        (None, Shape::Native) => bail!("cell `{}` has no runner", cell.name),
    };
    runners
        .get(&runner_name)
        .with_context(|| format!("unknown runner `{runner_name}`"))
}

pub fn run(args: &RenderArgs, runners: &RunnerSet) -> Result<()> {
    if args.overrides.port == 0 {
        bail!("--port 0 cannot be rendered: the script needs a fixed port");
    }
    let (sweep, cell, runner) = select(&args.cell, runners)?;
    let cell = &cell;
    let plan = plan(&sweep, cell, runner, &args.overrides)?;
    let script = render_script(&plan, runner, args.templates.as_deref())?;
    if sweep.settings.repeats > 1 {
        eprintln!(
            "kvsweep: the spec asks for repeats: {}, but a runner script runs its cell once; \
             run the repeats as separate jobs, or with `kvsweep run-cell` / `sweep --local` / \
             `slurm submit`, which run them in turn",
            sweep.settings.repeats
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join("run.sh");
    std::fs::write(&path, script).with_context(|| format!("cannot write {}", path.display()))?;
    set_executable(&path)?;
    println!("{}", path.display());
    Ok(())
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path)?.permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms)
        .with_context(|| format!("cannot chmod {}", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}
